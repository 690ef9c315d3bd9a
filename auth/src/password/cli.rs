//! What `unigate passwd …` calls: add, remove and list users in a password file, and read a
//! password from the terminal (never from the command line, where `ps` and shell history see it).

use std::io::{self, IsTerminal as _};
use std::path::Path;

use super::{PasswordError, PasswordStore};
use crate::Secret;

/// Sets `user`'s password in the file at `path` (created, mode 0600, when missing).
pub fn cli_add(path: &Path, user: &str, password: &Secret) -> Result<(), PasswordError> {
    let mut store = PasswordStore::load_or_new(path)?;
    store.add(user, password)?;
    store.save()
}

/// Removes `user` from the file at `path`; false when there was no such user (the file is then
/// left untouched).
pub fn cli_remove(path: &Path, user: &str) -> Result<bool, PasswordError> {
    let mut store = PasswordStore::load(path)?;
    if !store.remove(user) {
        return Ok(false);
    }
    store.save()?;
    Ok(true)
}

/// The user names in the file at `path`, sorted.
pub fn cli_list(path: &Path) -> Result<Vec<String>, PasswordError> {
    Ok(PasswordStore::load(path)?.list())
}

/// Reads a password: from the terminal without echo when stdin is one (asking twice and
/// comparing when `prompt_twice`), else one line from stdin (for scripts: `echo … | unigate
/// passwd add …`). The line ending is stripped; an empty password is refused.
pub fn read_password(prompt_twice: bool) -> Result<Secret, PasswordError> {
    let password = if io::stdin().is_terminal() {
        let first = Secret::new(rpassword::prompt_password("Password: ").map_err(PasswordError::Input)?);
        if prompt_twice {
            let second = Secret::new(rpassword::prompt_password("Password again: ").map_err(PasswordError::Input)?);
            if first != second {
                return Err(PasswordError::Mismatch);
            }
        }
        first
    } else {
        read_line(&mut io::stdin().lock())?
    };
    if password.is_empty() {
        return Err(PasswordError::EmptyPassword);
    }
    Ok(password)
}

/// One line, without its `\n` or `\r\n`.
fn read_line(input: &mut impl io::BufRead) -> Result<Secret, PasswordError> {
    let mut line = Vec::new();
    input.read_until(b'\n', &mut line).map_err(PasswordError::Input)?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Ok(Secret::new(line))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn one_line_is_read_without_its_ending() {
        let mut input = io::Cursor::new(b"s3cret pass\r\nnext line\n".to_vec());
        assert_eq!(read_line(&mut input).unwrap().expose(), b"s3cret pass");
        let mut input = io::Cursor::new(b"no newline".to_vec());
        assert_eq!(read_line(&mut input).unwrap().expose(), b"no newline");
        let mut input = io::Cursor::new(Vec::new());
        assert!(read_line(&mut input).unwrap().is_empty());
    }
}

//! What `unigate passwd …` calls: add, remove and list users in a password file, and read a
//! password from the terminal (never from the command line, where `ps` and shell history see it).

use std::io::{self, IsTerminal as _};
use std::path::Path;

use super::{Argon2Cost, PasswordError, PasswordStore};
use crate::Secret;

/// Sets `user`'s password in the file at `path` (created, mode 0600, when missing).
pub fn cli_add(path: &Path, user: &str, password: &Secret, cost: Argon2Cost) -> Result<(), PasswordError> {
    let mut store = PasswordStore::load_or_new(path)?.with_cost(cost);
    store.add(user, password)?;
    store.save()
}

/// What [`cli_import`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// Entries read (a user given twice counts twice; the last password wins).
    pub entries: usize,
    /// Of those, users that had a password before.
    pub replaced: usize,
}

/// Sets the passwords of many users from `input`, one `user:password` per line (split at the
/// first `:`, so a user name cannot contain one; the password is the rest of the line, without
/// its line ending). Empty lines and lines starting with `#` are skipped. Hashes on every core,
/// then writes the file once; a bad line changes nothing, and its error gives the line number,
/// never its content.
pub fn cli_import(path: &Path, input: &mut impl io::BufRead, cost: Argon2Cost) -> Result<Imported, PasswordError> {
    let mut store = PasswordStore::load_or_new(path)?.with_cost(cost);
    let mut entries = Vec::new();
    let mut number = 0;
    loop {
        if input.fill_buf().map_err(PasswordError::Input)?.is_empty() {
            break;
        }
        number += 1;
        let line = read_line(input)?;
        let bytes = line.expose();
        if bytes.is_empty() || bytes[0] == b'#' {
            continue;
        }
        let colon = bytes.iter().position(|b| *b == b':').ok_or(PasswordError::Import {
            line: number,
            reason: "expected user:password",
        })?;
        let user = std::str::from_utf8(&bytes[..colon]).map_err(|_| PasswordError::Import {
            line: number,
            reason: "the user name is not UTF-8",
        })?;
        entries.push((user.to_owned(), Secret::new(bytes[colon + 1..].to_vec())));
    }
    let replaced = store.add_many(&entries)?;
    store.save()?;
    Ok(Imported {
        entries: entries.len(),
        replaced,
    })
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

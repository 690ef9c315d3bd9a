//! A child process (another implementation's client) driven by a test: stdout read line by line
//! on a thread, every wait bounded by [`TIMEOUT`], the child killed when the test ends or fails.
//! A missing tool fails the test with a message saying what to install (`scripts/test.sh`
//! installs them); these tests never skip.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Instant;

use super::TIMEOUT;

/// A child process whose stdout is read line by line on a thread.
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<thread::JoinHandle<String>>,
    seen: Vec<String>,
}

impl Proc {
    /// Starts `program` with `args`; stdin stays open (a pipe) until [`Proc::close_stdin`].
    pub fn spawn(program: &str, args: &[String]) -> Proc {
        Self::spawn_with(program, args, false)
    }

    /// [`Proc::spawn`] with stdout line-buffered through `stdbuf -oL` (coreutils): mosquitto's
    /// clients do not flush their `-d` lines when stdout is a pipe, and the tests wait for them.
    pub fn spawn_line_buffered(program: &str, args: &[String]) -> Proc {
        Self::spawn_with(program, args, true)
    }

    pub fn spawn_with(program: &str, args: &[String], line_buffered: bool) -> Proc {
        require(program);
        let mut command = if line_buffered {
            require("stdbuf");
            let mut c = Command::new("stdbuf");
            c.arg("-oL").arg(program);
            c
        } else {
            Command::new(program)
        };
        let mut child = command
            .args(args)
            // Keep tests/paho free of __pycache__.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `{program}`: {e}. The interoperability tests need mosquitto-clients, \
                     libcoap3-bin (apt-get install mosquitto-clients libcoap3-bin) and paho-mqtt 2.x \
                     (python3 -m pip install 'paho-mqtt>=2,<3'); scripts/test.sh installs them"
                )
            });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().expect("stderr");
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Proc {
            name: format!("{program} {}", args.join(" ")),
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: Some(stderr),
            seen: Vec::new(),
        }
    }

    pub fn report(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let err = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        format!("`{}`\nstdout:\n{}\nstderr:\n{err}", self.name, self.seen.join("\n"))
    }

    /// Reads stdout until a line contains `needle`.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no line with {needle:?} in time from {}", self.report())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("exited before a line with {needle:?}: {}", self.report())
                }
            }
        }
    }

    /// Writes a line to the child's stdin.
    pub fn send_line(&mut self, line: &str) {
        use std::io::Write as _;
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush child stdin");
    }

    /// Closes the child's stdin (mosquitto_pub -l then disconnects and exits).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the child to exit (its stdout to close); returns the status and every stdout
    /// line. Kills it and fails after [`TIMEOUT`].
    pub fn finish(&mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("did not exit in time: {}", self.report()),
            }
        }
        let status = self.child.wait().expect("wait for child");
        (status, self.seen.clone())
    }

    /// [`Proc::finish`], failing unless the exit status is 0.
    pub fn succeed(&mut self) -> Vec<String> {
        let (status, lines) = self.finish();
        if !status.success() {
            panic!("exited with {status}: {}", self.report());
        }
        lines
    }

    /// Kills the child at once (SIGKILL: no DISCONNECT is sent).
    pub fn kill(&mut self) {
        self.child.kill().expect("kill child");
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails the test, saying what to install, when `program` is not on the PATH.
pub fn require(program: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| dir.join(program).is_file());
    assert!(
        found,
        "`{program}` is not installed. The interoperability tests need mosquitto-clients and \
         libcoap3-bin (apt-get install mosquitto-clients libcoap3-bin), paho-mqtt 2.x \
         (python3 -m pip install 'paho-mqtt>=2,<3') and coreutils' stdbuf; scripts/test.sh \
         installs them"
    );
}

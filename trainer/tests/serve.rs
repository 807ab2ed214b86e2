//! `bedside serve` as its own process: idle connections cost no thread and do not hold up
//! other requests, and running out of file descriptors pauses accepting without ending it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `bedside serve` child on a free port, killed on drop.
struct Serve {
    child: Child,
    port: u16,
    _root: tempfile::TempDir,
}

impl Serve {
    /// Starts the server, with at most `max_files` open file descriptors if given.
    fn start(max_files: Option<u32>) -> Serve {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("index.html"), "<!doctype html><title>t</title>").unwrap();
        let bin = env!("CARGO_BIN_EXE_bedside");
        let mut command = match max_files {
            Some(n) => {
                let mut command = Command::new("sh");
                command.args(["-c", &format!("ulimit -n {n} && exec \"$0\" serve --port 0 --root \"$1\"")]);
                command.arg(bin).arg(root.path());
                command
            }
            None => {
                let mut command = Command::new(bin);
                command.args(["serve", "--port", "0", "--root"]).arg(root.path());
                command
            }
        };
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("serve printed nothing").unwrap();
        let port = first
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("no port in {first:?}"));
        // Keep reading stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Serve { child, port, _root: root }
    }

    fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `GET /`'s status; a server that does not answer fails the test through the read timeout.
    fn get_index(&self) -> u16 {
        let mut stream = TcpStream::connect_timeout(&self.address(), Duration::from_secs(30)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(stream, "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", self.port).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("no answer");
        let text = String::from_utf8_lossy(&raw);
        assert!(text.ends_with("<!doctype html><title>t</title>"), "{}", text.lines().next().unwrap_or(""));
        text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(target_os = "linux")]
fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line["Threads:".len()..].trim().parse().unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn idle_connections_take_no_thread_and_hold_up_no_request() {
    let serve = Serve::start(None);
    let mut idle: Vec<TcpStream> = (0..400).map(|_| TcpStream::connect(serve.address()).unwrap()).collect();
    // Some send half a request head and stop.
    for stream in idle.iter_mut().step_by(4) {
        write!(stream, "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n", serve.port).unwrap();
    }
    assert_eq!(serve.get_index(), 200);
    // The request above came after the 400, so all of them have been accepted by now.
    let threads = threads_of(serve.child.id());
    assert!(threads <= 32, "{threads} threads for 400 idle connections");
    drop(idle);
}

#[cfg(unix)]
#[test]
fn accepting_survives_running_out_of_file_descriptors() {
    let serve = Serve::start(Some(48));
    assert_eq!(serve.get_index(), 200);
    // Far more connections than the server may have descriptors; the kernel completes them
    // while the server cannot accept. Connections beyond the kernel's queue time out.
    let flood: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect_timeout(&serve.address(), Duration::from_millis(500)).ok())
        .collect();
    assert!(flood.len() > 48, "only {} connections opened", flood.len());
    // Answered during the flood too: the server closes the connections idle longest.
    assert_eq!(serve.get_index(), 200);
    drop(flood);
    assert_eq!(serve.get_index(), 200);
}

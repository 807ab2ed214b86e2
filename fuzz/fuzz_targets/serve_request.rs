//! Request bytes through `bedside serve`'s request handling (`serve::status_for`: the head
//! parser and size limit, the Host allow-list, the method and body checks, path decoding and
//! resolution against a small site on disk), without a socket.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use bedside::serve::{status_for, Limits, Site};
use libfuzzer_sys::fuzz_target;

const PORT: u16 = 8080;
/// Every status the server can answer to a request.
const STATUSES: [u16; 9] = [200, 304, 400, 403, 404, 405, 413, 421, 431];

/// A site like the page's: index.html, a script, a bundle, and files it must never serve (a
/// data file, a hidden file, a file outside the root and a link to it).
fn site() -> &'static Site {
    static SITE: OnceLock<Site> = OnceLock::new();
    SITE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("bedside-fuzz-serve-{}", std::process::id()));
        let www = dir.join("www");
        std::fs::create_dir_all(www.join("pkg")).unwrap();
        std::fs::write(www.join("index.html"), "<!doctype html><title>t</title>").unwrap();
        std::fs::write(www.join("pkg/app.js"), "export {};").unwrap();
        std::fs::write(www.join("notes.csv"), "id,text\n1,x\n").unwrap();
        std::fs::write(www.join(".secret"), "no").unwrap();
        std::fs::write(dir.join("outside.html"), "no").unwrap();
        let _ = std::os::unix::fs::symlink(dir.join("outside.html"), www.join("link.html"));
        let model: PathBuf = dir.join("m.gguf");
        std::fs::write(&model, b"GGUF\x03\0\0\0").unwrap();
        Site::new(&www, Some(&model)).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Some((status, keep_alive)) = status_for(site(), PORT, data, &limits) {
        assert!(STATUSES.contains(&status), "status {status}");
        // Only a complete, allowed request may keep the connection.
        assert!(!keep_alive || [200, 304, 400, 403, 404].contains(&status), "keep-alive after {status}");
        // Nothing is served to a Host that is not this machine's (HTTP/1.0 may omit it).
        if status == 200 || status == 304 {
            let head = String::from_utf8_lossy(data).to_ascii_lowercase();
            let named = ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"].iter().any(|h| head.contains(h));
            assert!(named || head.contains("http/1.0"), "served to a foreign host");
        }
    } else {
        assert!(data.len() < limits.max_head_bytes, "an incomplete head past the limit must be refused");
    }
});

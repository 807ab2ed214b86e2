//! Files crafted the ways issue P7 found them, through the `bedside` binary as a user runs it:
//! bundles that carry a correct checksum (it is unkeyed, so a crafter recomputes it) and
//! `pytorch_model.bin` pickles. Each must end with exit code 2 and a one-line typed error —
//! never a panic, an abort or a signal — and a peak memory under what the same command takes
//! on the untouched fixture (measured in the same run) plus twice the file's size plus
//! `READER_ALLOWANCE`, the fixed-size tables of the readers (the pickle reader's value arena
//! is capped near 5 MiB whatever the file holds).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use bedside_runtime::bundle::{self, gguf};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bedside")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures").join(name)
}

/// How a run of the CLI ended: exit code (None after a signal), stderr, peak RSS in bytes.
struct Ran {
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
    peak_bytes: u64,
}

/// Runs the CLI under a small Python parent that reports the child's peak RSS: measured from
/// this (large) test process, a spawned child's peak would include this process's pages
/// until its exec.
fn run(args: &[&str]) -> Ran {
    const LAUNCHER: &str = "import resource, subprocess, sys\n\
        r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n\
        sys.stderr.buffer.write(r.stderr)\n\
        print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n";
    let output = Command::new("python3")
        .arg("-c")
        .arg(LAUNCHER)
        .arg(bin())
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    let report = String::from_utf8(output.stdout).unwrap();
    let (code, kb) = report.trim().split_once(' ').unwrap_or_else(|| panic!("launcher: {report:?}"));
    let code: i32 = code.parse().unwrap();
    Ran {
        code: (code >= 0).then_some(code),
        signal: (code < 0).then_some(-code),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        peak_bytes: kb.parse::<u64>().unwrap() * 1024,
    }
}

const READER_ALLOWANCE: u64 = 16 << 20;

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Exit code 2, one line naming `code` or `needle`, no panic, and bounded memory.
fn assert_refused(what: &str, ran: &Ran, needle: &str, file_bytes: u64, baseline: u64) {
    assert_eq!((ran.code, ran.signal), (Some(2), None), "{what}: {}", ran.stderr);
    assert!(!ran.stderr.contains("panicked"), "{what}: {}", ran.stderr);
    let lines: Vec<&str> = ran.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: one line expected: {}", ran.stderr);
    assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "{what}: {}", ran.stderr);
    let limit = baseline + 2 * file_bytes + READER_ALLOWANCE;
    eprintln!(
        "{what}: exit 2, peak {:.1} MB (baseline {:.1} MB, file {:.1} MB)",
        mb(ran.peak_bytes),
        mb(baseline),
        mb(file_bytes)
    );
    assert!(
        ran.peak_bytes <= limit,
        "{what}: peak {} MB, limit {} MB (baseline {} MB + 2 x {} MB + 16 MB)",
        ran.peak_bytes >> 20,
        limit >> 20,
        baseline >> 20,
        file_bytes >> 20
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bedside-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------- bundles ----------

const T_U32: u32 = 4;
const T_U8: u32 = 0;
const T_ARRAY: u32 = 9;
const GGML_F32: u32 = 0;

/// A GGUF file from a real bundle's metadata (raw encodings kept), with `extra` metadata
/// added and the tensor table and data given; then resealed so its checksum is correct.
fn craft(source: &[u8], extra: &[(&str, u32, Vec<u8>)], tensors: &[(String, Vec<u64>, u64)], data: &[u8]) -> Vec<u8> {
    let header = gguf::read_header(source, |_| Ok(())).unwrap();
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend(((header.metadata.len() + extra.len()) as u64).to_le_bytes());
    let key = |out: &mut Vec<u8>, k: &str| {
        out.extend((k.len() as u64).to_le_bytes());
        out.extend(k.as_bytes());
    };
    for m in &header.metadata {
        key(&mut out, m.key);
        out.extend(m.kind.to_le_bytes());
        out.extend(m.raw);
    }
    for (k, kind, raw) in extra {
        key(&mut out, k);
        out.extend(kind.to_le_bytes());
        out.extend(raw);
    }
    for (name, dims, offset) in tensors {
        key(&mut out, name);
        out.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(GGML_F32.to_le_bytes());
        out.extend(offset.to_le_bytes());
    }
    out.resize(out.len().div_ceil(32) * 32, 0);
    out.extend(data);
    // A crafted file whose header the reader refuses cannot be resealed; it goes as it is
    // (its stored checksum is then stale, and the header check still comes first).
    let _ = bundle::reseal(&mut out);
    out
}

#[test]
fn crafted_bundles_are_refused_in_bounded_memory() {
    let dir = temp_dir("bundles");
    let good = dir.join("good.gguf");
    let exported = Command::new(bin())
        .args(["export", "--model", fixture("tiny-classifier").to_str().unwrap(), "--quant", "f32"])
        .args(["--out", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    let source = std::fs::read(&good).unwrap();
    let baseline = run(&["inspect", good.to_str().unwrap()]);
    assert_eq!(baseline.code, Some(0), "{}", baseline.stderr);
    let baseline = baseline.peak_bytes;
    let real = gguf::read_header(&source, |_| Ok(())).unwrap();
    let tensors: Vec<(String, Vec<u64>, u64)> = real
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.dims.iter().rev().map(|&d| d as u64).collect(), t.offset))
        .collect();
    let data = &source[real.data_offset..];

    let blob = vec![0u8; 1 << 20];
    let many: Vec<(String, Vec<u64>, u64)> = (0..3000).map(|i| (format!("t{i}"), vec![1 << 18], 0)).collect();
    let mut big_array = T_U8.to_le_bytes().to_vec();
    big_array.extend(50_000_000u64.to_le_bytes());
    big_array.resize(big_array.len() + 50_000_000, 7);
    let mut duplicated = tensors.clone();
    duplicated.push(tensors[0].clone());
    let mut unused = tensors.clone();
    let end = data.len().div_ceil(32) * 32;
    unused.push(("extra.weight".into(), vec![8], end as u64));
    let mut unused_data = data.to_vec();
    unused_data.resize(end + 32, 0);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "alignment 0",
            craft(&source, &[("general.alignment", T_U32, 0u32.to_le_bytes().to_vec())], &tensors, data),
            "general.alignment",
        ),
        ("3000 tensors on one 1 MiB blob", craft(&source, &[], &many, &blob), "overlap"),
        (
            "a 50 MB metadata array",
            craft(&source, &[("x.big", T_ARRAY, big_array)], &tensors, data),
            "array of 50000000",
        ),
        ("a duplicate tensor", craft(&source, &[], &duplicated, data), "appears twice"),
        ("an unused tensor", craft(&source, &[], &unused, &unused_data), "extra.weight"),
    ];
    for (what, bytes, needle) in &cases {
        let path = dir.join("crafted.gguf");
        std::fs::File::create(&path).unwrap().write_all(bytes).unwrap();
        // `inspect` shows a readable file's metadata without building the model, so a tensor
        // the model does not read is refused by the commands that build it.
        let commands: &[&str] = if *what == "an unused tensor" { &["classify"] } else { &["inspect", "classify"] };
        for &command in commands {
            let mut args = vec![command, path.to_str().unwrap()];
            if command == "classify" {
                args = vec!["classify", "--model", path.to_str().unwrap(), "chest pain"];
            }
            let ran = run(&args);
            assert_refused(&format!("{what} ({command})"), &ran, needle, bytes.len() as u64, baseline);
        }
    }

    // The name is covered by the checksum in format 3: renamed without resealing is refused.
    let mut renamed = source.clone();
    let at = renamed.windows(15).position(|w| w == b"tiny-classifier").unwrap();
    renamed[at] = b'T';
    let path = dir.join("renamed.gguf");
    std::fs::write(&path, &renamed).unwrap();
    let ran = run(&["inspect", path.to_str().unwrap()]);
    assert_refused("a renamed bundle", &ran, "checksum mismatch", renamed.len() as u64, baseline);
}

// ---------- pickles ----------

/// Raw pickle opcodes (protocol 2), just enough to build what a torch checkpoint holds.
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Pickle {
        Pickle(vec![0x80, 2])
    }
    fn op(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend(bytes);
        self
    }
    fn string(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.as_bytes());
        self
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }
    fn int(&mut self, v: i64) -> &mut Self {
        self.0.push(0x8a); // LONG1
        self.0.push(8);
        self.0.extend(v.to_le_bytes());
        self
    }
    fn ints(&mut self, vs: &[i64]) -> &mut Self {
        self.op(b"(");
        for &v in vs {
            self.int(v);
        }
        self.op(b"t")
    }
    /// The persistent id torch writes for a float storage `key` of `numel` elements.
    fn storage(&mut self, key: &str, numel: i64) -> &mut Self {
        self.op(b"(").string("storage").global("torch", "FloatStorage").string(key).string("cpu").int(numel);
        self.op(b"tQ")
    }
    /// `_rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict())`.
    fn tensor(&mut self, shape: &[i64], stride: &[i64]) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").op(b"(").storage("0", 4);
        self.int(0).ints(shape).ints(stride).op(&[0x89]).global("collections", "OrderedDict").op(b")R");
        self.op(b"tR")
    }
    /// `{"embeddings.word_embeddings.weight": <body>}`, then STOP.
    fn state_dict(body: impl FnOnce(&mut Self)) -> Vec<u8> {
        let mut p = Pickle::new();
        p.op(b"}").string("embeddings.word_embeddings.weight");
        body(&mut p);
        p.op(b"s.");
        p.0
    }
}

/// A checkpoint directory: the tiny fixture's config and tokenizer, and `pickle` as torch
/// would zip it, with one 16-byte storage `0`.
fn checkpoint_dir(name: &str, pickle: &[u8]) -> (PathBuf, u64) {
    let dir = temp_dir(name);
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixture("tiny-safetensors").join(file), dir.join(file)).unwrap();
    }
    let path = dir.join("pytorch_model.bin");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(pickle).unwrap();
    zip.start_file("archive/data/0", stored).unwrap();
    zip.write_all(&[0; 16]).unwrap();
    zip.finish().unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    (dir, size)
}

#[test]
fn crafted_pickles_are_refused_in_bounded_memory() {
    let good = fixture("tiny-safetensors");
    let out = temp_dir("pickle-out").join("m.gguf");
    let baseline = run(&["export", "--model", good.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(baseline.code, Some(0), "{}", baseline.stderr);
    let big = i64::from(i32::MAX);
    let mut bomb = Pickle::new();
    bomb.op(b"}").string("bomb").op(b"]");
    for level in 0..100u8 {
        bomb.op(&[b'q', level, b'h', level, b'h', level, 0x87]);
    }
    bomb.op(b"s.");
    let mut deep = Pickle::new();
    deep.op(&vec![b']'; 1_000_000]).op(&vec![b'a'; 999_999]).op(b".");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a short argument tuple",
            Pickle::state_dict(|p| {
                p.global("torch._utils", "_rebuild_tensor_v2").op(b"(").storage("0", 4).int(0).op(b"tR");
            }),
            "2 arguments",
        ),
        ("a memo-clone bomb", bomb.0, "no tensors"),
        ("a million nested lists", deep.0, "more than 131072 values"),
        (
            "shape (2^31-1)^2",
            Pickle::state_dict(|p| {
                p.tensor(&[big, big], &[big, 1]);
            }),
            "which holds 16",
        ),
        (
            "shape (2^31-1, 64)",
            Pickle::state_dict(|p| {
                p.tensor(&[big, 64], &[64, 1]);
            }),
            "which holds 16",
        ),
        (
            "os.system",
            Pickle::state_dict(|p| {
                p.global("os", "system").string("true").op(b"\x85R");
            }),
            "not allowed",
        ),
    ];
    for (i, (what, pickle, needle)) in cases.iter().enumerate() {
        let (dir, size) = checkpoint_dir(&format!("pickle-{i}"), pickle);
        let ran = run(&["export", "--model", dir.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert_refused(what, &ran, needle, size, baseline.peak_bytes);
        assert!(ran.stderr.contains("pytorch_model.bin"), "{what}: names the file: {}", ran.stderr);
    }
}

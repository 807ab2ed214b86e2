//! Kill-anywhere resume: the `bedside` binary is aborted right after each step of a durable
//! state (or best checkpoint) write (`BEDSIDE_TEST_KILL_AT`, trainer/src/durable.rs), a
//! complete `state/` and `best/` survive every kill, and `--resume` then reaches the weights
//! of an uninterrupted run bit for bit, with each step logged once in `log.jsonl`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bedside::durable::{committed_dir, Step};

mod common;
use common::{fixture, temp_dir, write};

fn notes() -> String {
    let rows = [
        ("chest pain and cardiac murmur", "cardiac"),
        ("cough and fever", "respiratory"),
        ("heart murmur with chest pain", "cardiac"),
        ("asthma with shortness of breath", "respiratory"),
        ("cardiac edema and heart pain", "cardiac"),
        ("lung infection and cough", "respiratory"),
    ];
    let mut csv = String::from("text,label\n");
    for _ in 0..3 {
        for (text, label) in rows {
            csv.push_str(&format!("{text},{label}\n"));
        }
    }
    csv
}

/// A short seeded run that evaluates and saves its state after every step: 18 notes, batch
/// 4, 2 epochs (5 steps an epoch).
fn train_args(dir: &Path, out: &Path) -> Vec<String> {
    let train = write(dir, "train.csv", &notes());
    let val = write(dir, "val.csv", &notes());
    let base = fixture();
    let args = [
        "train",
        "classify",
        "--base",
        base.to_str().unwrap(),
        "--train",
        train.to_str().unwrap(),
        "--val",
        val.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--lr",
        "3e-3",
        "--max-seq-len",
        "16",
        "--seed",
        "11",
        "--save-steps",
        "1",
        // Validation loss after every step: it improves often, so best/ is replaced mid-run.
        "--eval-steps",
        "1",
        "--metric",
        "loss",
        "--no-baseline-probe",
    ];
    args.iter().map(|s| s.to_string()).collect()
}

fn bedside(args: &[String], kill_at: Option<&str>) -> std::process::ExitStatus {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bedside"));
    command.args(args).stdout(Stdio::null()).stderr(Stdio::null()).env_remove("BEDSIDE_TEST_KILL_AT");
    if let Some(spec) = kill_at {
        command.env("BEDSIDE_TEST_KILL_AT", spec);
    }
    command.status().unwrap()
}

/// The steps of the `step` lines of a run's log, in order.
fn logged_steps(out: &Path) -> Vec<u64> {
    std::fs::read_to_string(out.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|entry| entry["type"] == "step")
        .map(|entry| entry["step"].as_u64().unwrap())
        .collect()
}

fn assert_complete_checkpoint(dir: &Path, files: &[&str], context: &str) {
    let found =
        committed_dir(dir).unwrap_or_else(|| panic!("{context}: neither {} nor its .old exists", dir.display()));
    for file in files {
        assert!(found.join(file).is_file(), "{context}: {} lacks {file}", found.display());
    }
}

fn siblings_left(out: &Path) -> Vec<PathBuf> {
    let mut left: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "old" || x == "partial"))
        .collect();
    left.sort();
    left
}

#[test]
fn resume_after_a_kill_at_any_step_of_a_save_reaches_the_uninterrupted_weights() {
    let dir = temp_dir("crash-resume");
    let whole = dir.join("whole");
    assert!(bedside(&train_args(&dir, &whole), None).success());
    let whole_steps = logged_steps(&whole);
    assert_eq!(whole_steps, (1..=10).collect::<Vec<u64>>());

    // Every step of a state/ save and of a best/ save, mid-run: the 3rd time a state/ save
    // reaches it, the 2nd time a best/ save does (the 1st best/ save comes before any state/,
    // and rename-aside first happens on the 2nd save, once there is an old best/).
    let mut kills: Vec<String> = Step::ALL.iter().map(|s| format!("{}:3@state", s.name())).collect();
    kills.extend(Step::ALL.iter().map(|s| format!("{}:2@best", s.name())));
    for (i, kill) in kills.iter().enumerate() {
        let out = dir.join(format!("killed-{i}"));
        let args = train_args(&dir, &out);
        let status = bedside(&args, Some(kill));
        assert!(!status.success() && status.code().is_none(), "{kill}: the run was not aborted ({status})");
        assert!(!out.join("report.json").exists(), "{kill}: the run got to its report");
        assert_complete_checkpoint(
            &out.join("state"),
            &["state.json", "model.safetensors", "optimizer.safetensors"],
            kill,
        );
        assert_complete_checkpoint(&out.join("best"), &["config.json", "model.safetensors", "tokenizer.json"], kill);

        let mut resume = args.clone();
        resume.push("--resume".into());
        assert!(bedside(&resume, None).success(), "{kill}: --resume failed");
        for file in ["state/model.safetensors", "state/optimizer.safetensors", "best/model.safetensors"] {
            let a = std::fs::read(whole.join(file)).unwrap();
            let b = std::fs::read(out.join(file)).unwrap();
            assert!(a == b, "{kill}: {file} differs from the uninterrupted run's");
        }
        assert_eq!(logged_steps(&out), whole_steps, "{kill}: log.jsonl repeats or skips steps");
        assert_eq!(siblings_left(&out), Vec::<PathBuf>::new(), "{kill}: left over after the resume");
    }
}

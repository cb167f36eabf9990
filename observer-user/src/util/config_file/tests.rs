use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, ArgAction, Command};

use super::*;

/// A stand-in for the CLI: the kinds of options `observer sidecar` has.
fn cli() -> Command {
    let dur = |v: &str| -> Result<String, String> {
        if v.ends_with('s') {
            Ok(v.to_string())
        } else {
            Err(format!("`{v}` is not a duration"))
        }
    };
    Command::new("observer")
        .subcommand(Command::new("report").arg(Arg::new("file")))
        .subcommand(
            Command::new("sidecar")
                .arg(
                    Arg::new("stall_after")
                        .long("stall-after")
                        .value_parser(dur),
                )
                .arg(
                    Arg::new("alerts_keep")
                        .long("alerts-keep")
                        .value_parser(clap::value_parser!(u32)),
                )
                .arg(
                    Arg::new("budget")
                        .long("go-probe-budget")
                        .value_parser(clap::value_parser!(f64)),
                )
                .arg(Arg::new("metrics_addr").long("metrics-addr"))
                .arg(
                    Arg::new("quiet")
                        .long("quiet")
                        .short('q')
                        .action(ArgAction::SetTrue),
                )
                .arg(
                    Arg::new("no_metrics")
                        .long("no-metrics")
                        .action(ArgAction::SetTrue)
                        .conflicts_with("metrics_addr"),
                )
                .arg(Arg::new("label").long("label").action(ArgAction::Append))
                .arg(Arg::new("pid").long("pid").required(true))
                .arg(Arg::new("config").long("config")),
        )
}

struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "observer-config-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn expand_with(name: &str, contents: &str, user: &[&str]) -> Result<Vec<String>, String> {
    let file = TempFile::new(name, contents.as_bytes());
    let mut args: Vec<OsString> = vec!["observer".into(), "sidecar".into()];
    args.push("--config".into());
    args.push(file.0.clone().into());
    args.extend(user.iter().map(OsString::from));
    expand(args, &cli())
        .map(|a| {
            a.into_iter()
                .skip(2)
                .map(|s| s.into_string().unwrap())
                .take_while(|s| s != "--config")
                .collect()
        })
        .map_err(|e| e.to_string().replace(&file.0.display().to_string(), "F"))
}

#[test]
fn every_kind_of_value_becomes_arguments() {
    let args = expand_with(
        "kinds",
        "stall-after = \"5s\"\nalerts_keep = 3\ngo-probe-budget = 2.5\nquiet = true\n\
         no-metrics = false\nlabel = [\"a\", \"-b\"]\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        args,
        [
            "--alerts-keep=3",
            "--go-probe-budget=2.5",
            "--label=a",
            "--label=-b",
            "--quiet",
            "--stall-after=5s",
        ]
    );
}

#[test]
fn the_command_line_wins() {
    let file = "stall-after = \"5s\"\nquiet = true\nmetrics-addr = \"0.0.0.0:1\"\n";
    let args = expand_with("override", file, &["--stall-after", "1s", "-q"]).unwrap();
    assert_eq!(args, ["--metrics-addr=0.0.0.0:1"]);
    let args = expand_with("override2", file, &["--metrics-addr=127.0.0.1:2"]).unwrap();
    assert_eq!(args, ["--quiet", "--stall-after=5s"]);
}

#[test]
fn without_config_nothing_changes() {
    let args: Vec<OsString> = ["observer", "sidecar", "--quiet", "--", "--config", "x"]
        .iter()
        .map(OsString::from)
        .collect();
    assert_eq!(expand(args.clone(), &cli()).unwrap(), args);
    // A subcommand without --config is left to clap.
    let other: Vec<OsString> = ["observer", "report", "--config", "x"]
        .iter()
        .map(OsString::from)
        .collect();
    assert_eq!(expand(other.clone(), &cli()).unwrap(), other);
}

#[test]
fn unknown_keys_are_named_with_a_suggestion() {
    let e = expand_with("unknown", "quiet = true\n\nstall-afte = \"5s\"\n", &[]).unwrap_err();
    assert_eq!(
        e,
        "F: line 3: key `stall-afte`: unknown option (did you mean `stall-after`?)"
    );
    let e = expand_with("unknown2", "frobnicate = 1\n", &[]).unwrap_err();
    assert!(
        e.contains("key `frobnicate`: unknown option (the keys are"),
        "{e}"
    );
    let e = expand_with("self", "config = \"other.toml\"\n", &[]).unwrap_err();
    assert!(e.contains("key `config`: a config file cannot"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let e = expand_with("badvalue", "stall-after = \"abc\"\n", &[]).unwrap_err();
    assert!(
        e.starts_with("F: line 1: key `stall-after`: invalid value 'abc'"),
        "{e}"
    );
    assert!(e.ends_with("is not a duration"), "{e}");
    let e = expand_with("badint", "alerts-keep = -1\n", &[]).unwrap_err();
    assert!(
        e.starts_with("F: line 1: key `alerts-keep`: invalid value"),
        "{e}"
    );
    let e = expand_with("flagtype", "quiet = \"yes\"\n", &[]).unwrap_err();
    assert_eq!(
        e,
        "F: line 1: key `quiet`: a flag takes true or false, not a string"
    );
    let e = expand_with("array", "stall-after = [\"1s\", \"2s\"]\n", &[]).unwrap_err();
    assert!(
        e.contains("key `stall-after`: an array is only for a repeatable"),
        "{e}"
    );
    let e = expand_with("table", "[stall-after]\nx = 1\n", &[]).unwrap_err();
    assert!(e.contains("key `stall-after`: a table is not"), "{e}");
    let e = expand_with("date", "stall-after = 1979-05-27\n", &[]).unwrap_err();
    assert!(e.contains("a date is not an option value"), "{e}");
    // Each value alone is fine; together they conflict.
    let e = expand_with(
        "conflict",
        "no-metrics = true\nmetrics-addr = \"0.0.0.0:1\"\n",
        &[],
    )
    .unwrap_err();
    assert!(e.starts_with("F: the argument"), "{e}");
}

#[test]
fn broken_files_are_clear_errors() {
    let e = expand_with("syntax", "stall-after = \n", &[]).unwrap_err();
    assert!(e.starts_with("F: not valid TOML: "), "{e}");
    let e = expand_with("twice", "quiet = true\nquiet = false\n", &[]).unwrap_err();
    assert!(
        e.starts_with("F: not valid TOML: ") && e.contains("duplicate"),
        "{e}"
    );
    let e = expand_with("nottoml", "{\"json\": 1}\n", &[]).unwrap_err();
    assert!(e.starts_with("F: not valid TOML: "), "{e}");

    let missing = std::env::temp_dir().join("observer-config-does-not-exist.toml");
    let args: Vec<OsString> = vec![
        "observer".into(),
        "sidecar".into(),
        format!("--config={}", missing.display()).into(),
    ];
    let e = expand(args, &cli()).unwrap_err().to_string();
    assert!(e.contains("does-not-exist.toml: No such file"), "{e}");

    let big = TempFile::new("big", &vec![b'#'; MAX_BYTES as usize + 1]);
    let args: Vec<OsString> = vec![
        "observer".into(),
        "sidecar".into(),
        "--config".into(),
        big.0.clone().into(),
    ];
    let e = expand(args, &cli()).unwrap_err().to_string();
    assert!(e.ends_with(": larger than 1048576 bytes"), "{e}");

    let binary = TempFile::new("binary", b"quiet = true\n\xff\xfe\n");
    let args: Vec<OsString> = vec![
        "observer".into(),
        "sidecar".into(),
        "--config".into(),
        binary.0.clone().into(),
    ];
    let e = expand(args, &cli()).unwrap_err().to_string();
    assert!(e.ends_with(": not UTF-8 text"), "{e}");

    // A directory cannot be read as a file.
    let args: Vec<OsString> = vec![
        "observer".into(),
        "sidecar".into(),
        "--config".into(),
        std::env::temp_dir().into(),
    ];
    assert!(expand(args, &cli()).is_err());
}

#[test]
fn typo_distance() {
    assert_eq!(edit_distance("stall-afte", "stall-after"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}

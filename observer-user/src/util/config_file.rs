//! `--config FILE`: a TOML file of long options, turned into command-line arguments.
//!
//! Generic over clap: the keys are the long option names of the subcommand (kebab-case, or
//! snake_case), checked against its `clap::Command`, so options added later are covered
//! without a line here. The file's options go right after the subcommand name, before the
//! user's own arguments; an option also given on the command line is left out of the file's,
//! so the command line wins. Values are checked by letting clap parse each key's arguments
//! alone, and its complaint is re-worded with the key and the file.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{ArgAction, Command};
use thiserror::Error;
use toml::de::{DeTable, DeValue};

/// Files larger than this are refused: a configuration is a few hundred bytes.
pub const MAX_BYTES: u64 = 1 << 20;
/// The option that names the file; not allowed inside it.
const CONFIG: &str = "config";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: larger than {MAX_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    #[error("{}: not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{}: line {line}: key `{key}`: {message}", path.display())]
    Key {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Options { path: PathBuf, message: String },
}

/// `args` (program name first) with the options of the `--config FILE` it names, if any,
/// inserted after the subcommand. `cli` is the whole command-line interface.
pub fn expand(args: Vec<OsString>, cli: &Command) -> Result<Vec<OsString>, ConfigError> {
    let Some(sub_name) = args.get(1).and_then(|a| a.to_str()) else {
        return Ok(args);
    };
    let Some(sub) = cli
        .find_subcommand(sub_name)
        .filter(|s| s.get_arguments().any(|a| a.get_long() == Some(CONFIG)))
    else {
        return Ok(args);
    };
    let user = &args[2..];
    let Some(path) = config_path(user) else {
        return Ok(args);
    };
    let text = read_bounded(&path)?;
    let tokens = options_of(&text, &path, sub, user)?;
    let mut out = Vec::with_capacity(args.len() + tokens.len());
    out.extend_from_slice(&args[..2]);
    out.extend(tokens.into_iter().map(OsString::from));
    out.extend_from_slice(user);
    Ok(out)
}

/// The FILE of `--config FILE` or `--config=FILE` among the user's arguments (before `--`).
fn config_path(user: &[OsString]) -> Option<PathBuf> {
    let mut it = user.iter();
    while let Some(a) = it.next() {
        let a = a.to_str()?;
        if a == "--" {
            return None;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    None
}

fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    let read = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(bytes).map_err(|_| ConfigError::NotText {
        path: path.to_path_buf(),
    })
}

/// The arguments the file stands for, minus the options the user gave (`user`).
fn options_of(
    text: &str,
    path: &Path,
    sub: &Command,
    user: &[OsString],
) -> Result<Vec<String>, ConfigError> {
    let table = DeTable::parse(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().replace('\n', "\n  "),
    })?;
    let mut tokens = Vec::new();
    for (key, value) in table.get_ref() {
        let line = line_of(text, key.span().start);
        let err = |message: String| ConfigError::Key {
            path: path.to_path_buf(),
            line,
            key: key.get_ref().to_string(),
            message,
        };
        let name = key.get_ref().replace('_', "-");
        if name == CONFIG {
            return Err(err("a config file cannot name another one".into()));
        }
        let Some(arg) = sub
            .get_arguments()
            .find(|a| a.get_long() == Some(name.as_str()))
        else {
            return Err(err(unknown(sub, &name)));
        };
        let mine = key_tokens(&name, arg.get_action(), value.get_ref()).map_err(err)?;
        check_values(sub, &mine).map_err(err)?;
        if !given_by_user(user, &name, arg.get_short()) {
            tokens.extend(mine);
        }
    }
    check_values(sub, &tokens).map_err(|message| ConfigError::Options {
        path: path.to_path_buf(),
        message,
    })?;
    Ok(tokens)
}

/// One key's arguments: `--name=value` per value (`=` keeps values starting with `-` values),
/// `--name` for a flag set to true.
fn key_tokens(name: &str, action: &ArgAction, value: &DeValue) -> Result<Vec<String>, String> {
    let scalar = |v: &DeValue| -> Result<String, String> {
        match v {
            DeValue::String(s) => Ok(s.to_string()),
            DeValue::Integer(i) => Ok(i.to_string()),
            DeValue::Float(f) => Ok(f.to_string()),
            DeValue::Boolean(b) => Ok(b.to_string()),
            DeValue::Datetime(_) => Err("a date is not an option value (quote it)".into()),
            DeValue::Array(_) => Err("an array is only for a repeatable option".into()),
            DeValue::Table(_) => Err("a table is not an option value".into()),
        }
    };
    match action {
        ArgAction::SetTrue | ArgAction::SetFalse => match value {
            DeValue::Boolean(true) => Ok(vec![format!("--{name}")]),
            DeValue::Boolean(false) => Ok(Vec::new()),
            other => Err(format!(
                "a flag takes true or false, not {}",
                type_name(other)
            )),
        },
        ArgAction::Append => match value {
            DeValue::Array(items) => items
                .iter()
                .map(|v| scalar(v.get_ref()).map(|s| format!("--{name}={s}")))
                .collect(),
            other => Ok(vec![format!("--{name}={}", scalar(other)?)]),
        },
        ArgAction::Set => Ok(vec![format!("--{name}={}", scalar(value)?)]),
        _ => Err("not an option a config file can set".into()),
    }
}

fn type_name(v: &DeValue) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Lets clap parse `tokens` alone: a bad value or a conflict is an error; what the file cannot
/// be expected to hold (a required option or command given on the command line) is not.
fn check_values(sub: &Command, tokens: &[String]) -> Result<(), String> {
    let probe = sub.clone().no_binary_name(true);
    match probe.try_get_matches_from(tokens) {
        Ok(_) => Ok(()),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::MissingRequiredArgument
            | clap::error::ErrorKind::MissingSubcommand
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => Ok(()),
            _ => Err(clap_message(&e.to_string())),
        },
    }
}

/// clap's message without its `error: ` prefix, usage and help hint.
fn clap_message(text: &str) -> String {
    let first = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    first.strip_prefix("error: ").unwrap_or(&first).to_string()
}

/// Whether the user's arguments set this option (long form, or a lone short flag).
fn given_by_user(user: &[OsString], long: &str, short: Option<char>) -> bool {
    let (eq, lone) = (format!("--{long}="), format!("--{long}"));
    let short = short.map(|c| format!("-{c}"));
    user.iter()
        .filter_map(|a| a.to_str())
        .take_while(|a| *a != "--")
        .any(|a| {
            a == lone || a.starts_with(&eq) || short.as_deref().is_some_and(|s| a.starts_with(s))
        })
}

fn unknown(sub: &Command, name: &str) -> String {
    let closest = sub
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| *l != CONFIG)
        .map(|l| (edit_distance(l, name), l))
        .min();
    match closest {
        Some((d, l)) if d <= 3 => format!("unknown option (did you mean `{l}`?)"),
        _ => format!(
            "unknown option (the keys are the long options of `observer {} --help`)",
            sub.get_name()
        ),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests;

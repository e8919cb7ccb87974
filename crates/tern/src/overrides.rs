//! The two override layers above the file: `TERN_*` environment variables and
//! `tern serve` flags. Both produce [`Entry`]s that [`crate::settings::from_entries`] merges.

use std::path::PathBuf;

use anyhow::{bail, Context as _};

use crate::conf::{Entry, Origin};
use crate::keys::{self, Arity, Known};

/// What `tern serve …` was given.
#[derive(Debug, Default, Clone)]
pub struct ServeArgs {
    /// `-c FILE` / `--config FILE`.
    pub config: Option<PathBuf>,
    /// Key flags, in order.
    pub entries: Vec<Entry>,
    /// `-h` / `--help`.
    pub help: bool,
}

/// Entries from environment variables named `TERN_<KEY>`; others are ignored. Values of
/// multi-valued keys are comma-separated lists. Pass `std::env::vars()` in production and
/// a literal list in tests.
pub fn env_entries<I: IntoIterator<Item = (String, String)>>(vars: I) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut vars: Vec<_> = vars.into_iter().collect();
    vars.sort(); // deterministic order of warnings
    for (var, value) in vars {
        let Some(key) = keys::key_for_env_var(&var) else {
            continue;
        };
        let origin = Origin::Env { var: var.clone() };
        let entry = |v: &str| Entry {
            key: key.into(),
            value: Some(v.into()),
            origin: origin.clone(),
        };
        match keys::lookup(key) {
            Known::Implemented(k) if k.multi => out.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(entry),
            ),
            _ => out.push(entry(&value)),
        }
    }
    out
}

/// Parses the arguments after `tern serve`.
pub fn parse_serve_args<I: IntoIterator<Item = String>>(args: I) -> anyhow::Result<ServeArgs> {
    let mut out = ServeArgs::default();
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            out.help = true;
        } else if arg == "-n" {
            // coturn's "do not read a configuration file": tern reads one only when told to.
        } else if let Some(path) = config_value(&arg, &mut args)? {
            out.config = Some(path);
        } else if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (long, None),
            };
            let flag = format!("--{name}");
            let arity = match keys::lookup(name) {
                Known::Implemented(k) => k.arity,
                Known::Unimplemented(a) => a,
                Known::Unknown => Arity::Flag,
            };
            let value = match inline {
                Some(v) => Some(v),
                None => take_value(arity, &flag, &mut args)?,
            };
            out.entries.push(Entry {
                key: name.into(),
                value,
                origin: Origin::Flag { flag },
            });
        } else if let Some(k) = short_key(&arg) {
            let flag = arg[..2].to_owned();
            let value = match &arg[2..] {
                "" => take_value(k.arity, &flag, &mut args)?,
                attached => Some(attached.to_owned()),
            };
            out.entries.push(Entry {
                key: k.name.into(),
                value,
                origin: Origin::Flag { flag },
            });
        } else {
            bail!("tern serve: unexpected argument `{arg}` (see `tern serve --help`)");
        }
    }
    Ok(out)
}

fn config_value(
    arg: &str,
    args: &mut impl Iterator<Item = String>,
) -> anyhow::Result<Option<PathBuf>> {
    if let Some(path) = arg.strip_prefix("--config=") {
        return Ok(Some(path.into()));
    }
    if arg == "-c" || arg == "--config" {
        let path = args
            .next()
            .with_context(|| format!("flag {arg} needs a file name"))?;
        return Ok(Some(path.into()));
    }
    Ok(arg
        .strip_prefix("-c")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from))
}

fn short_key(arg: &str) -> Option<&'static keys::Key> {
    let mut chars = arg.chars();
    if chars.next() != Some('-') {
        return None;
    }
    keys::by_short(chars.next()?)
}

fn take_value(
    arity: Arity,
    flag: &str,
    args: &mut std::iter::Peekable<impl Iterator<Item = String>>,
) -> anyhow::Result<Option<String>> {
    match arity {
        Arity::Flag => Ok(None),
        Arity::Value => args
            .next()
            .map(Some)
            .with_context(|| format!("flag {flag} needs a value")),
        Arity::OptionalValue => Ok(args.next_if(|v| v.parse::<u64>().is_ok())),
    }
}

/// The `tern serve --help` text.
pub fn serve_help() -> String {
    let mut text = String::from(
        "Run the TURN/STUN server.\n\n\
         Usage: tern serve [-c FILE] [--KEY[=VALUE]]...\n\n\
         Every turnserver.conf key is also a flag (`--min-port 50000`, `--min-port=50000`,\n\
         `--fingerprint`) and an environment variable (TERN_MIN_PORT=50000; lists are\n\
         comma-separated; flags take 1/true/yes or 0/false/no).\n\
         Precedence: file < environment < flags.\n\
         Without any configuration, tern starts for local use with a generated secret.\n\n\
         Options:\n  -c, --config FILE   read this turnserver.conf\n  -h, --help          this text\n\n\
         Keys tern implements:\n",
    );
    for k in keys::IMPLEMENTED {
        let short = k.short.map_or(String::from("    "), |c| format!("-{c}, "));
        let value = match k.arity {
            Arity::Flag => "",
            Arity::Value => " VALUE",
            Arity::OptionalValue => " [SECONDS]",
        };
        let list = if k.multi { "  (repeatable)" } else { "" };
        text.push_str(&format!("  {short}--{}{value}{list}\n", k.name));
    }
    text.push_str("\nOther coturn keys are accepted with a warning and ignored.\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> ServeArgs {
        parse_serve_args(list.iter().map(|s| s.to_string())).unwrap()
    }

    fn pairs(a: &ServeArgs) -> Vec<(String, Option<String>)> {
        a.entries
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect()
    }

    #[test]
    fn long_short_and_config_forms() {
        let a = args(&[
            "-c",
            "/etc/turnserver.conf",
            "--min-port",
            "50000",
            "--max-port=50100",
            "--fingerprint",
            "--stale-nonce",
            "--realm",
            "x",
            "-p3479",
            "-v",
            "--cert",
            "/c.pem",
            "--no-tlsv1",
        ]);
        assert_eq!(
            a.config.as_deref(),
            Some(std::path::Path::new("/etc/turnserver.conf"))
        );
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            pairs(&a),
            vec![
                ("min-port".into(), s("50000")),
                ("max-port".into(), s("50100")),
                ("fingerprint".into(), None),
                ("stale-nonce".into(), None),
                ("realm".into(), s("x")),
                ("listening-port".into(), s("3479")),
                ("verbose".into(), None),
                ("cert".into(), s("/c.pem")),
                ("no-tlsv1".into(), None),
            ]
        );
        assert_eq!(a.entries[0].origin.to_string(), "flag --min-port");
        assert_eq!(
            args(&["--config=a.conf"]).config.unwrap().to_str(),
            Some("a.conf")
        );
        assert_eq!(
            pairs(&args(&["--stale-nonce", "30"]))[0].1.as_deref(),
            Some("30")
        );
    }

    #[test]
    fn missing_values_and_strays_are_errors() {
        let err = parse_serve_args(["--min-port".to_string()])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "flag --min-port needs a value");
        assert!(parse_serve_args(["stray".to_string()]).is_err());
        assert!(parse_serve_args(["-c".to_string()]).is_err());
    }

    #[test]
    fn env_lists_split_and_unrelated_vars_ignored() {
        let vars = [
            ("TERN_DENIED_PEER_IP", "10.0.0.0/8, 192.168.0.0/16"),
            ("TERN_MIN_PORT", "50000"),
            ("TERN_BIN", "/usr/bin/tern"),
            ("PATH", "/bin"),
        ];
        let e = env_entries(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let keys: Vec<_> = e
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_deref().unwrap()))
            .collect();
        assert_eq!(
            keys,
            [
                ("denied-peer-ip", "10.0.0.0/8"),
                ("denied-peer-ip", "192.168.0.0/16"),
                ("min-port", "50000")
            ]
        );
        assert_eq!(
            e[2].origin.to_string(),
            "environment variable TERN_MIN_PORT"
        );
    }
}

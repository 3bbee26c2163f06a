//! Where settings come from, in order of precedence: a flag on the command
//! line, its environment variable (`--peers-per-worker` ⇒
//! `WHIS_PEERS_PER_WORKER`, for every long flag of every command), the
//! `--config` file (TOML, keys are the long flag names), then the default.
//!
//! The file is applied by giving clap the file's settings as extra flags,
//! only for those the command line and the environment left unset: clap
//! checks every value the same way wherever it came from.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use crate::config::Cli;

/// The environment variable of a long flag.
pub fn env_name(long: &str) -> String {
    format!("WHIS_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// The `whis` command with a `WHIS_*` variable behind every long flag.
pub fn command() -> clap::Command {
    fn with_env(arg: clap::Arg) -> clap::Arg {
        match arg.get_long() {
            // --help names the variable but never shows its value (secrets).
            Some(long) if arg.get_env().is_none() => {
                let name = env_name(long);
                arg.env(name).hide_env_values(true)
            }
            _ => arg,
        }
    }
    let mut cmd = Cli::command().mut_args(with_env);
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(name, |sub| sub.mut_args(with_env));
    }
    cmd
}

/// Parse the process's arguments; `--help`, `--version` and bad flags print
/// and exit as usual. Err: a problem with the config file, for the caller
/// to print.
pub fn parse() -> Result<Cli, String> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let matches = command().get_matches_from(&args);
    let Some(file) = matches.get_one::<std::path::PathBuf>("config").cloned() else {
        return Cli::from_arg_matches(&matches).map_err(|e| e.to_string());
    };
    let extra = file_flags(&file, &matches)?;
    let mut all = args;
    all.extend(extra.into_iter().map(OsString::from));
    let matches = command()
        .try_get_matches_from(&all)
        .map_err(|e| format!("{}: {}", file.display(), e.render()))?;
    Cli::from_arg_matches(&matches).map_err(|e| e.to_string())
}

/// The flags a config file adds: one per key the command line and the
/// environment left unset.
pub fn file_flags(file: &Path, matches: &ArgMatches) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read --config {}: {e}", file.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{} is not valid TOML: {e}", file.display()))?;
    let root = command();
    let (sub_cmd, sub_matches) = match matches.subcommand() {
        Some((name, m)) => (root.find_subcommand(name), m),
        None => (None, matches),
    };
    let mut flags = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let arg = sub_cmd
            .into_iter()
            .flat_map(|c| c.get_arguments())
            .chain(root.get_arguments())
            .find(|a| a.get_long() == Some(long.as_str()))
            .filter(|a| a.get_id() != "config")
            .ok_or_else(|| {
                format!(
                    "{}: unknown setting `{key}` (keys are the long flag names, as in `whis {} --help`)",
                    file.display(),
                    sub_cmd.map(|c| c.get_name()).unwrap_or("")
                )
            })?;
        let id = arg.get_id().as_str();
        if matches!(
            sub_matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let values: Vec<&toml::Value> = match value {
            toml::Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for v in values {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) if matches!(arg.get_action(), ArgAction::SetTrue) => {
                    if *b {
                        flags.push(format!("--{long}"));
                    }
                    continue;
                }
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(format!(
                        "{}: `{key}` is a {}; give a string, number, boolean or a list of them",
                        file.display(),
                        other.type_str()
                    ))
                }
            };
            flags.push(format!("--{long}={text}"));
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Command;

    fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "whis-cli-{}-{name}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("whis.toml");
        std::fs::write(&file, text).expect("write config");
        file
    }

    /// Parse like `parse`, with these arguments and no WHIS_* variables set
    /// by the test runner's environment taken into account for the file.
    fn parse_with(args: &[&str]) -> Result<Cli, String> {
        let matches = command()
            .try_get_matches_from(args)
            .map_err(|e| e.to_string())?;
        let Some(file) = matches.get_one::<std::path::PathBuf>("config").cloned() else {
            return Cli::from_arg_matches(&matches).map_err(|e| e.to_string());
        };
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(file_flags(&file, &matches)?);
        let matches = command()
            .try_get_matches_from(&all)
            .map_err(|e| e.to_string())?;
        Cli::from_arg_matches(&matches).map_err(|e| e.to_string())
    }

    fn serve(cli: Cli) -> crate::config::ServeArgs {
        match cli.command {
            Command::Serve(s) => s,
            other => panic!("expected serve, got {other:?}"),
        }
    }

    #[test]
    fn every_long_flag_has_its_environment_variable() {
        let cmd = command();
        let serve = cmd.find_subcommand("serve").expect("serve exists");
        let listen = serve
            .get_arguments()
            .find(|a| a.get_long() == Some("peers-per-worker"))
            .expect("flag exists");
        assert_eq!(
            listen.get_env().and_then(|e| e.to_str()),
            Some("WHIS_PEERS_PER_WORKER")
        );
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments().filter(|a| a.get_long().is_some()) {
                assert!(arg.get_env().is_some(), "{} has no variable", arg.get_id());
            }
        }
    }

    #[test]
    fn the_file_fills_what_the_command_line_left_unset() {
        let file = temp_file(
            "fill",
            r#"
listen = "127.0.0.1:9999"
peers_per_worker = 7
no-workers = true
allow-origin = ["https://a.example", "https://b.example"]
log-format = "json"
cluster-secret = "a secret of sixteen+"
"#,
        );
        let cli = parse_with(&[
            "whis",
            "serve",
            "--config",
            file.to_str().expect("utf-8 path"),
            "--peers-per-worker",
            "3",
        ])
        .expect("parses");
        assert_eq!(cli.log_format, crate::config::LogFormat::Json);
        let s = serve(cli);
        assert_eq!(s.listen.to_string(), "127.0.0.1:9999");
        assert_eq!(s.peers_per_worker, 3, "the command line wins");
        assert!(s.no_workers);
        assert_eq!(s.allow_origin, ["https://a.example", "https://b.example"]);
        assert_eq!(
            s.deploy.cluster_secret.as_deref(),
            Some("a secret of sixteen+")
        );
    }

    #[test]
    fn bad_config_files_are_refused_with_the_reason() {
        for (name, text, expect) in [
            ("unknown", "lisen = \"x\"\n", "unknown setting `lisen`"),
            ("toml", "listen = \n", "not valid TOML"),
            ("value", "peers-per-worker = \"many\"\n", "peers-per-worker"),
            ("table", "[listen]\nx = 1\n", "is a table"),
            (
                "config",
                "config = \"other.toml\"\n",
                "unknown setting `config`",
            ),
        ] {
            let file = temp_file(name, text);
            let err = parse_with(&["whis", "serve", "--config", file.to_str().expect("utf-8")])
                .err()
                .unwrap_or_else(|| panic!("{name}: accepted"));
            assert!(err.contains(expect), "{name}: {err}");
        }
        let missing = parse_with(&["whis", "serve", "--config", "/nonexistent/whis.toml"])
            .expect_err("a missing file is an error");
        assert!(missing.contains("cannot read --config"), "{missing}");
    }
}

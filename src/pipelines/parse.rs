//! Reading what people type after `/spinnaker`: subcommands, `key=value` parameters, execution ids
//! and Deck URLs. Every mistake becomes a message that says what is wrong and how to write it.
//!
//! Slack clients may turn straight quotes into typographic ones, so those are straightened before
//! the text is split into words (shell rules: quotes group words, `\` escapes).

use std::collections::BTreeMap;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Start {
        application: String,
        pipeline: String,
        parameters: BTreeMap<String, String>,
    },
    Cancel {
        execution_id: String,
        reason: Option<String>,
    },
    Status {
        application: String,
        pipeline: Option<String>,
    },
    Pending {
        application: Option<String>,
    },
    Pipelines {
        application: String,
    },
}

/// Split like a shell, after straightening Slack's typographic quotes.
pub fn words(text: &str) -> Result<Vec<String>, String> {
    // Slack escapes these three in command text.
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let straight: String = text
        .chars()
        .map(|c| match c {
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{00AB}' | '\u{00BB}' => '"',
            '\u{2018}' | '\u{2019}' | '\u{201A}' => '\'',
            c => c,
        })
        .collect();
    shlex::split(&straight).ok_or_else(|| "a quote is not closed. Put values with spaces in matching quotes, for example `message=\"hello world\"`.".to_string())
}

/// Parse `key=value` words.
pub fn parameters(words: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "`{}` is not a parameter. Write parameters as `name=value` (no spaces around `=`; quote values with spaces).",
                w.replace('`', "'")
            ));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!(
                "`{}` has no parameter name before `=`.",
                w.replace('`', "'")
            ));
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("the parameter `{k}` is given twice."));
        }
    }
    Ok(out)
}

/// An execution id from an id or a Deck URL such as
/// `https://deck/#/applications/app/executions/details/01J6…?stage=0`.
pub fn execution_id(target: &str) -> Result<String, String> {
    let t = target.trim().trim_start_matches('<').trim_end_matches('>');
    // Slack wraps links as <url|label>.
    let t = t.split('|').next().unwrap_or(t);
    let candidate = if t.contains("://") || t.contains('/') {
        let after = t
            .split("/executions/details/")
            .nth(1)
            .or_else(|| t.split("/executions/").nth(1))
            .or_else(|| t.split("/pipelines/").nth(1))
            .ok_or_else(|| format!("`{}` is not a Deck execution URL. Give the execution id, or the URL of the execution's page in Deck.", t.replace('`', "'")))?;
        after
            .split(['?', '/', '#', '&'])
            .next()
            .unwrap_or("")
            .to_string()
    } else {
        t.to_string()
    };
    let valid = !candidate.is_empty()
        && candidate.len() <= 64
        && candidate
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(candidate)
    } else {
        Err(format!(
            "`{}` is not an execution id. An id looks like `01J6Z3Q9W8X7Y6V5T4S3R2Q1P0`; a Deck URL works too.",
            candidate.replace('`', "'")
        ))
    }
}

/// Parse the text after the command name.
pub fn parse(text: &str, command: &str) -> Result<Command, String> {
    let w = words(text)?;
    let Some((sub, rest)) = w.split_first() else {
        return Ok(Command::Help);
    };
    let usage = |u: &str| format!("Usage: `{command} {u}`");
    match sub.to_ascii_lowercase().as_str() {
        "help" | "-h" | "--help" => Ok(Command::Help),
        "start" | "run" | "trigger" => {
            let [app, pipeline, params @ ..] = rest else {
                return Err(format!(
                    "`start` needs an application and a pipeline. {}",
                    usage("start <application> <pipeline> [name=value …]")
                ));
            };
            Ok(Command::Start {
                application: app.clone(),
                pipeline: pipeline.clone(),
                parameters: parameters(params)?,
            })
        }
        "cancel" | "stop" => {
            let [target, reason @ ..] = rest else {
                return Err(format!(
                    "`cancel` needs an execution id or Deck URL. {}",
                    usage("cancel <execution id | Deck URL> [reason]")
                ));
            };
            let reason = (!reason.is_empty()).then(|| reason.join(" "));
            Ok(Command::Cancel {
                execution_id: execution_id(target)?,
                reason,
            })
        }
        "status" => match rest {
            [app] => Ok(Command::Status {
                application: app.clone(),
                pipeline: None,
            }),
            [app, pipeline] => Ok(Command::Status {
                application: app.clone(),
                pipeline: Some(pipeline.clone()),
            }),
            _ => Err(format!(
                "`status` takes an application and optionally a pipeline. {}",
                usage("status <application> [pipeline]")
            )),
        },
        "pending" => match rest {
            [] => Ok(Command::Pending { application: None }),
            [app] => Ok(Command::Pending {
                application: Some(app.clone()),
            }),
            _ => Err(format!(
                "`pending` takes at most an application. {}",
                usage("pending [application]")
            )),
        },
        "pipelines" | "list" => match rest {
            [app] => Ok(Command::Pipelines {
                application: app.clone(),
            }),
            _ => Err(format!(
                "`pipelines` takes an application. {}",
                usage("pipelines <application>")
            )),
        },
        other => Err(format!(
            "`{}` is not a subcommand. Use `start`, `cancel`, `status`, `pending`, `pipelines` or `help`.",
            other.replace('`', "'")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_text_and_help_give_help() {
        assert_eq!(parse("", "/spinnaker"), Ok(Command::Help));
        assert_eq!(parse("  help ", "/spinnaker"), Ok(Command::Help));
    }

    #[test]
    fn start_reads_parameters_with_quotes_and_smart_quotes() {
        let c = parse(
            "start myapp deploy-prod version=v42 note=\u{201C}two words\u{201D}",
            "/spinnaker",
        )
        .unwrap();
        let Command::Start {
            application,
            pipeline,
            parameters,
        } = c
        else {
            panic!("not start")
        };
        assert_eq!(application, "myapp");
        assert_eq!(pipeline, "deploy-prod");
        assert_eq!(parameters["version"], "v42");
        assert_eq!(parameters["note"], "two words");
        let c = parse("start myapp \"deploy prod\" empty=", "/spinnaker").unwrap();
        let Command::Start {
            pipeline,
            parameters,
            ..
        } = c
        else {
            panic!("not start")
        };
        assert_eq!(pipeline, "deploy prod");
        assert_eq!(parameters["empty"], "");
    }

    #[test]
    fn bad_input_is_explained() {
        assert!(
            parse("start myapp", "/spinnaker")
                .unwrap_err()
                .contains("Usage: `/spinnaker start")
        );
        assert!(
            parse("start a p oops", "/spinnaker")
                .unwrap_err()
                .contains("name=value")
        );
        assert!(
            parse("start a p =x", "/spinnaker")
                .unwrap_err()
                .contains("no parameter name")
        );
        assert!(
            parse("start a p x=1 x=2", "/spinnaker")
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            parse("deploy x", "/spinnaker")
                .unwrap_err()
                .contains("not a subcommand")
        );
        assert!(
            parse("start a \"p", "/spinnaker")
                .unwrap_err()
                .contains("quote")
        );
        assert!(
            parse("status", "/spinnaker")
                .unwrap_err()
                .contains("status <application>")
        );
    }

    #[test]
    fn slack_escapes_are_undone() {
        let c = parse("start app p note=a&amp;b&lt;c&gt;", "/spinnaker").unwrap();
        let Command::Start { parameters, .. } = c else {
            panic!("not start")
        };
        assert_eq!(parameters["note"], "a&b<c>");
    }

    #[test]
    fn executions_are_found_in_ids_and_deck_urls() {
        assert_eq!(execution_id("01J6EXEC").unwrap(), "01J6EXEC");
        assert_eq!(
            execution_id(
                "https://deck.example.com/#/applications/myapp/executions/details/01J6EXEC?stage=2"
            )
            .unwrap(),
            "01J6EXEC"
        );
        assert_eq!(
            execution_id("<https://deck.example.com/#/applications/a/executions/01ABC|link>")
                .unwrap(),
            "01ABC"
        );
        assert!(execution_id("https://example.com/nothing").is_err());
        assert!(execution_id("not an id!").is_err());
        let c = parse("cancel 01J6EXEC broken canary", "/spinnaker").unwrap();
        assert_eq!(
            c,
            Command::Cancel {
                execution_id: "01J6EXEC".into(),
                reason: Some("broken canary".into())
            }
        );
    }
}

//! The configuration shipped in `manifests/` is one `slackops serve` accepts: the ConfigMap's
//! `base/slackops.yaml` loads, with each overlay's environment and the Secret's keys as the files
//! its `_file` settings name, through the same loader `serve` uses (unknown keys and invalid
//! values are errors there). `.ci/validate-deploy` checks the Kubernetes side of the same files.

use std::path::Path;

use slackops::config::{ConfigSource, GateAuthKind, Settings};

const BASE_CONFIG: &str = include_str!("../manifests/base/slackops.yaml");
const SQLITE_PATCH: &str = include_str!("../manifests/overlays/sqlite/deployment-patch.yaml");
const POSTGRES_PATCH: &str = include_str!("../manifests/overlays/postgres/deployment-patch.yaml");
/// Where the Deployment mounts the Secret `slackops-secrets`.
const SECRET_MOUNT: &str = "/var/run/secrets/slackops";

/// The Secret's keys as files (placeholder values of the right shape), and the ConfigMap with its
/// paths moved into `dir`; returns the configuration file.
fn mount(dir: &Path) -> std::path::PathBuf {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets dir");
    for (key, value) in [
        (
            "slack-signing-secret",
            "placeholder-signing-secret-0123456789",
        ),
        ("slack-bot-token", "xoxb-0000-0000-placeholder"),
        ("echo-token", "placeholder-echo-token-0123456789"),
        (
            "gate-client.crt",
            "-----BEGIN CERTIFICATE-----\nplaceholder\n-----END CERTIFICATE-----\n",
        ),
        (
            "gate-client.key",
            "-----BEGIN PRIVATE KEY-----\nplaceholder\n-----END PRIVATE KEY-----\n",
        ),
        (
            "database-url",
            "postgres://slackops:placeholder@postgres.example.internal:5432/slackops\n",
        ),
    ] {
        std::fs::write(secrets.join(key), value).expect("secret file");
    }
    let config = dir.join("slackops.yaml");
    let text = BASE_CONFIG.replace(SECRET_MOUNT, &secrets.display().to_string());
    std::fs::write(&config, text).expect("config file");
    config
}

fn load(config: &Path, env: &[(&str, String)]) -> Settings {
    let mut vars: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    vars.push((
        "SLACKOPS_API__TOKENS".into(),
        r#"["placeholder-api-token-0123456789"]"#.into(),
    ));
    Settings::load(&ConfigSource {
        file: Some(config.to_path_buf()),
        env: vars,
    })
    .unwrap_or_else(|e| panic!("the shipped configuration must load: {e}"))
}

#[test]
fn the_sqlite_overlay_configuration_loads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = mount(dir.path());
    assert!(
        SQLITE_PATCH.contains("SLACKOPS_DATABASE__URL") && SQLITE_PATCH.contains("sqlite://"),
        "the sqlite overlay sets database.url through the environment"
    );
    let db = format!("sqlite://{}", dir.path().join("slackops.db").display());

    let s = load(&config, &[("SLACKOPS_DATABASE__URL", db.clone())]);

    assert_eq!(s.database.url.expose(), db);
    assert_eq!(s.server.listen.port(), 8080, "the container port");
    assert_eq!(
        s.server.shutdown_timeout_secs, 25,
        "below the pod's grace period"
    );
    assert_eq!(s.spinnaker.auth.kind, GateAuthKind::X509);
    assert!(
        s.spinnaker
            .auth
            .client_cert
            .expose()
            .contains("BEGIN CERTIFICATE")
    );
    assert_eq!(s.slack.bot_token.expose(), "xoxb-0000-0000-placeholder");
    assert_eq!(s.api.tokens.len(), 1);
}

#[test]
fn the_postgres_overlay_configuration_loads_its_url_from_the_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = mount(dir.path());
    let url_file = format!("{SECRET_MOUNT}/database-url");
    assert!(
        POSTGRES_PATCH.contains("SLACKOPS_DATABASE__URL_FILE")
            && POSTGRES_PATCH.contains(&url_file),
        "the postgres overlay names the Secret's database-url file"
    );
    let moved = url_file.replace(
        SECRET_MOUNT,
        &dir.path().join("secrets").display().to_string(),
    );

    let s = load(&config, &[("SLACKOPS_DATABASE__URL_FILE", moved)]);

    assert_eq!(
        s.database.url.expose(),
        "postgres://slackops:placeholder@postgres.example.internal:5432/slackops",
        "read from the file, trailing newline dropped"
    );
    assert!(
        !s.database.display_url().contains("placeholder"),
        "the password is redacted when shown"
    );
}

"""What the deployment files promise, checked on what they really render to.

Schemas say a manifest is well-formed; these checks say it is the deployment manifests/README.md
describes: one SQLite replica with Recreate, several PostgreSQL replicas with rolling updates and a
PodDisruptionBudget, a locked-down container, probes on /healthz and /readyz, a grace period longer
than the graceful shutdown, secrets only through `_file` keys that exist in the Secret template;
halconfig profiles that forward echo's events where slackops listens; and a Slack app manifest whose
URLs are the routes src/startup.rs serves, on the host the configuration and the Ingress use; a
Socket Mode manifest with no URL at all and the same commands, events and scopes; Socket Mode
renderings that let nothing from outside in (no Slack-facing Ingress, no ingress-controller rule
unless the status page is exposed on its own) and read the app-level token from the Secret; a
Dockerfile whose image runs as the Deployment's user; and a monitoring component
(manifests/components/monitoring) whose PrometheusRule and dashboard are exactly
deploy/monitoring/'s, and whose ServiceMonitor really selects the slackops Service's port.

kubernetes-validate has no schemas for the Prometheus Operator's kinds (it only warns), so every
kind a rendering may contain is listed here: the core kinds it validates, and ServiceMonitor and
PrometheusRule, whose wiring is checked below. Any other kind (a typo such as `Deploymnt`) fails.

Usage: deploy_checks.py DIR=RENDERED.yaml ...   (called by .ci/validate-deploy)
       deploy_checks.py --sync-monitoring        (rewrite the component's copies of deploy/monitoring/)
Every problem is reported, then the exit code is 1 if there was any.
"""

import json

import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parent.parent
problems: list[str] = []

MONITORING = ROOT / "deploy/monitoring"
COMPONENT = ROOT / "manifests/components/monitoring"
RULES = MONITORING / "slackops.rules.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
COMPONENT_RULE = COMPONENT / "prometheusrule.yaml"
COMPONENT_DASHBOARD = COMPONENT / "slackops-dashboard.json"

CORE_KINDS = {"Namespace", "ServiceAccount", "Deployment", "Service", "NetworkPolicy", "ConfigMap",
              "PersistentVolumeClaim", "PodDisruptionBudget", "Ingress"}
OPERATOR_KINDS = {"ServiceMonitor": "monitoring.coreos.com/v1", "PrometheusRule": "monitoring.coreos.com/v1"}


def fail(where: str, message: str) -> None:
    problems.append(f"{where}: {message}")


def load_all(path: Path) -> list[dict]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def load(path: Path):
    with path.open() as f:
        return yaml.safe_load(f)


def secret_template_keys() -> set[str]:
    (secret,) = load_all(ROOT / "manifests/secret-template.yaml")
    return set((secret.get("stringData") or {}).keys()) | set((secret.get("data") or {}).keys())


def file_keys(node, prefix=""):
    """Every `<key>_file: PATH` in a configuration tree, as (dotted key, path)."""
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else k
            if k.endswith("_file") and isinstance(v, str):
                yield key, v
            else:
                yield from file_keys(v, key)


def check_rendering(where: str, docs: list[dict]) -> None:
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d.get("kind", "?"), []).append(d)
    for kind in sorted(set(by_kind) - CORE_KINDS - set(OPERATOR_KINDS)):
        fail(where, f"kind {kind} is neither validated by kubernetes-validate nor checked here")

    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        fail(where, f"expected one Deployment, found {len(deployments)}")
        return
    dep = deployments[0]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    annotations = spec["template"]["metadata"].get("annotations", {})

    # The configuration as the pod sees it.
    cms = [c for c in by_kind.get("ConfigMap", []) if c["metadata"]["name"].startswith("slackops-config")]
    if len(cms) != 1 or "slackops.yaml" not in cms[0].get("data", {}):
        fail(where, "expected one ConfigMap slackops-config with a slackops.yaml key")
        return
    config = yaml.safe_load(cms[0]["data"]["slackops.yaml"]) or {}
    if not any(v.get("configMap", {}).get("name") == cms[0]["metadata"]["name"] for v in pod.get("volumes", [])):
        fail(where, "the pod does not mount the generated ConfigMap")

    # Pod security.
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        fail(where, "pod securityContext.runAsNonRoot must be true")
    if not psc.get("runAsUser"):
        fail(where, "pod securityContext.runAsUser must be a non-zero UID")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        fail(where, "pod seccompProfile must be RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        fail(where, "automountServiceAccountToken must be false (slackops never calls the Kubernetes API)")

    containers = pod.get("containers", [])
    if len(containers) != 1:
        fail(where, f"expected one container, found {len(containers)}")
        return
    c = containers[0]
    csc = c.get("securityContext", {})
    if csc.get("readOnlyRootFilesystem") is not True:
        fail(where, "container readOnlyRootFilesystem must be true")
    if csc.get("allowPrivilegeEscalation") is not False:
        fail(where, "container allowPrivilegeEscalation must be false")
    if csc.get("capabilities", {}).get("drop") != ["ALL"]:
        fail(where, "container must drop ALL capabilities")
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in res.get(kind, {}):
                fail(where, f"container resources.{kind}.{r} is missing")
    if c.get("args") != ["serve"]:
        fail(where, f"container args must be [serve], not {c.get('args')}")
    port = next((p for p in c.get("ports", []) if p.get("name") == "http"), None)
    listen_port = int(str(config.get("server", {}).get("listen", "0.0.0.0:8080")).rsplit(":", 1)[1])
    if not port or port.get("containerPort") != listen_port:
        fail(where, f"container port http must be server.listen's port {listen_port}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        got = c.get(probe, {}).get("httpGet", {}).get("path")
        if got != path:
            fail(where, f"{probe} must GET {path}, not {got}")

    # Graceful shutdown fits in the grace period.
    shutdown = int(config.get("server", {}).get("shutdown_timeout_secs", 25))
    env = {e["name"]: e for e in c.get("env", [])}
    if "SLACKOPS_SERVER__SHUTDOWN_TIMEOUT_SECS" in env:
        shutdown = int(env["SLACKOPS_SERVER__SHUTDOWN_TIMEOUT_SECS"]["value"])
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if not shutdown + pre_stop < grace:
        fail(where, f"terminationGracePeriodSeconds ({grace}) must exceed server.shutdown_timeout_secs "
                    f"({shutdown}) + the preStop pause ({pre_stop})")

    # Prometheus.
    if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/path") != "/metrics" \
            or annotations.get("prometheus.io/port") != str(listen_port):
        fail(where, "pod template needs prometheus.io/scrape, /path (/metrics) and /port annotations")

    # Secrets: only through files from the Secret's mount, and every file is a key of the template.
    secret_vol = next((v for v in pod.get("volumes", []) if v.get("secret", {}).get("secretName") == "slackops-secrets"), None)
    mount = next((m for m in c.get("volumeMounts", []) if secret_vol and m["name"] == secret_vol["name"]), None)
    if not mount:
        fail(where, "the Secret slackops-secrets must be mounted")
        return
    keys = secret_template_keys()
    refs = list(file_keys(config))
    # An empty `_FILE` value unsets a key of the file (components/socket-mode does so for the
    # signing secret); it names no file.
    refs += [(name, e["value"]) for name, e in env.items() if name.endswith("_FILE") and e.get("value")]
    for key, path in refs:
        directory, _, name = path.rpartition("/")
        if directory != mount["mountPath"].rstrip("/"):
            fail(where, f"{key} points at {path}, outside the Secret's mount {mount['mountPath']}")
        elif name not in keys:
            fail(where, f"{key} names {name}, which manifests/secret-template.yaml does not have")
    for name, e in env.items():
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref.get("key") not in keys:
            fail(where, f"env {name} reads Secret key {ref.get('key')}, which the template does not have")
    for secret_key in ("signing_secret", "bot_token"):
        if secret_key in config.get("slack", {}):
            fail(where, f"slack.{secret_key} is written in the ConfigMap; use slack.{secret_key}_file")

    check_slack_mode(where, by_kind, config, env, keys)
    check_monitoring_rendering(where, by_kind, pod_labels)

    # Service and NetworkPolicy reach the pods.
    for svc in by_kind.get("Service", []):
        sel = svc["spec"].get("selector", {})
        if not sel or any(pod_labels.get(k) != v for k, v in sel.items()):
            fail(where, f"Service {svc['metadata']['name']} does not select the slackops pods")
    nps = by_kind.get("NetworkPolicy", [])
    if not nps:
        fail(where, "a NetworkPolicy is required")
    types = {t for np in nps for t in np["spec"].get("policyTypes", [])}
    if types != {"Ingress", "Egress"}:
        fail(where, f"NetworkPolicies must restrict Ingress and Egress, found {sorted(types)}")
    egress_ports = {p.get("port") for np in nps for rule in np["spec"].get("egress", []) for p in rule.get("ports", [])}
    for needed, what in ((53, "DNS"), (443, "Slack and the providers")):
        if needed not in egress_ports:
            fail(where, f"no egress to port {needed} ({what})")

    # The database decides replicas and strategy.
    db_url = env.get("SLACKOPS_DATABASE__URL", {}).get("value") or config.get("database", {}).get("url", "")
    is_postgres = "SLACKOPS_DATABASE__URL_FILE" in env or str(db_url).startswith("postgres")
    replicas = spec.get("replicas", 1)
    strategy = spec.get("strategy", {}).get("type", "RollingUpdate")
    if is_postgres:
        if replicas < 2:
            fail(where, f"PostgreSQL deployments run at least two replicas, not {replicas}")
        if strategy != "RollingUpdate":
            fail(where, f"PostgreSQL deployments use RollingUpdate, not {strategy}")
        pdbs = by_kind.get("PodDisruptionBudget", [])
        if not any(all(pod_labels.get(k) == v for k, v in p["spec"]["selector"].get("matchLabels", {}).items()) for p in pdbs):
            fail(where, "PostgreSQL deployments need a PodDisruptionBudget selecting the pods")
        if 5432 not in egress_ports:
            fail(where, "no egress to PostgreSQL (5432)")
    else:
        if not str(db_url).startswith("sqlite://"):
            fail(where, f"database is neither PostgreSQL nor sqlite://: {db_url!r}")
            return
        if replicas != 1:
            fail(where, f"SQLite deployments run exactly one replica, not {replicas}")
        if strategy != "Recreate":
            fail(where, f"SQLite deployments use the Recreate strategy, not {strategy}")
        db_dir = str(db_url)[len("sqlite://"):].rsplit("/", 1)[0]
        data = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == db_dir), None)
        vol = data and next((v for v in pod.get("volumes", []) if v["name"] == data["name"]), None)
        claim = vol and vol.get("persistentVolumeClaim", {}).get("claimName")
        if not claim or claim not in {p["metadata"]["name"] for p in by_kind.get("PersistentVolumeClaim", [])}:
            fail(where, f"the SQLite directory {db_dir} must be a mounted PersistentVolumeClaim")


STATUS_PATHS = {"/status", "/status.json"}


def check_slack_mode(where: str, by_kind: dict, config: dict, env: dict, keys: set) -> None:
    """HTTP mode needs the signing secret; Socket Mode needs the app token and lets nobody in."""
    mode = env.get("SLACKOPS_SLACK__MODE", {}).get("value") or config.get("slack", {}).get("mode", "http")
    slack = config.get("slack", {})
    signing_unset = env.get("SLACKOPS_SLACK__SIGNING_SECRET_FILE", {}).get("value") == ""
    if mode == "http":
        if signing_unset or not ("signing_secret_file" in slack or "SLACKOPS_SLACK__SIGNING_SECRET_FILE" in env):
            fail(where, "HTTP mode needs slack.signing_secret_file")
        return
    if mode != "socket":
        fail(where, f"slack.mode must be http or socket, not {mode!r}")
        return
    token = env.get("SLACKOPS_SLACK__APP_TOKEN_FILE", {}).get("value") or slack.get("app_token_file")
    if not token:
        fail(where, "Socket Mode needs slack.app_token_file (env SLACKOPS_SLACK__APP_TOKEN_FILE)")
    elif token.rpartition("/")[2] not in keys:
        fail(where, f"the app token file {token} is not a key of manifests/secret-template.yaml")
    if "app_token" in slack:
        fail(where, "slack.app_token is written in the ConfigMap; use slack.app_token_file")
    connections = int(env.get("SLACKOPS_SLACK__SOCKET_CONNECTIONS", {}).get("value") or slack.get("socket_connections", 2))
    replicas = by_kind["Deployment"][0]["spec"].get("replicas", 1)
    if replicas * connections > 10:
        fail(where, f"{replicas} replicas × {connections} Socket Mode connections exceed Slack's 10 per app")
    ingresses = by_kind.get("Ingress", [])
    exposed = {p.get("path") for i in ingresses for r in i["spec"].get("rules", []) for p in r.get("http", {}).get("paths", [])}
    if exposed - STATUS_PATHS:
        fail(where, f"Socket Mode exposes nothing but the status page through an Ingress, found {sorted(exposed - STATUS_PATHS)}")
    from_controller = [
        rule for np in by_kind.get("NetworkPolicy", []) for rule in np["spec"].get("ingress", [])
        if any(f.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "ingress-nginx"
               for f in rule.get("from", []))
    ]
    if from_controller and not ingresses:
        fail(where, "Socket Mode without a status-page Ingress must not let the ingress controller in")
def prometheusrule_text() -> str:
    """The PrometheusRule carrying deploy/monitoring/slackops.rules.yml's groups, as committed."""
    lines = RULES.read_text().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("groups:"))
    body = "\n".join(("  " + l) if l.strip() else "" for l in lines[start:])
    return (
        "# Generated from deploy/monitoring/slackops.rules.yml by\n"
        "# `python3 .ci/deploy_checks.py --sync-monitoring`: edit that file, not this one.\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        "  name: slackops\n"
        "  namespace: slackops\n"
        "  labels:\n"
        "    app.kubernetes.io/name: slackops\n"
        "    app.kubernetes.io/part-of: slackops\n"
        "spec:\n" + body + "\n"
    )


def sync_monitoring() -> None:
    COMPONENT_RULE.write_text(prometheusrule_text())
    COMPONENT_DASHBOARD.write_text(DASHBOARD.read_text())
    print(f"wrote {COMPONENT_RULE.relative_to(ROOT)} and {COMPONENT_DASHBOARD.relative_to(ROOT)}")


def check_monitoring_component() -> None:
    """The component's copies say exactly what deploy/monitoring/ says."""
    where = "manifests/components/monitoring"
    how = "run `python3 .ci/deploy_checks.py --sync-monitoring`"
    rules = load(RULES)
    rule = load(COMPONENT_RULE)
    if rule.get("spec", {}).get("groups") != rules.get("groups"):
        fail(where, f"prometheusrule.yaml's groups differ from deploy/monitoring/slackops.rules.yml: {how}")
    elif COMPONENT_RULE.read_text() != prometheusrule_text():
        fail(where, f"prometheusrule.yaml is not as generated: {how}")
    if json.loads(COMPONENT_DASHBOARD.read_text()) != json.loads(DASHBOARD.read_text()):
        fail(where, f"slackops-dashboard.json differs from deploy/monitoring/grafana-dashboard.json: {how}")
    names = [r["alert"] for g in rules.get("groups", []) for r in g.get("rules", []) if "alert" in r]
    doc = (ROOT / "docs/monitoring.md").read_text()
    for name in names:
        if f"### {name}" not in doc:
            fail("docs/monitoring.md", f"no runbook section `### {name}`")
    for g in rules.get("groups", []):
        for r in g.get("rules", []):
            a = r.get("annotations", {})
            if "alert" in r and not (a.get("summary") and a.get("description")
                                     and a.get("runbook") == f"docs/monitoring.md#{r['alert'].lower()}"):
                fail(str(RULES.relative_to(ROOT)), f"{r['alert']} needs a summary, a description and "
                                                   f"runbook: docs/monitoring.md#{r['alert'].lower()}")


def check_monitoring_rendering(where: str, by_kind: dict, pod_labels: dict) -> None:
    """A ServiceMonitor that scrapes the slackops pods' /metrics, a PrometheusRule with our rules."""
    monitors = by_kind.get("ServiceMonitor", [])
    rules = by_kind.get("PrometheusRule", [])
    if not monitors and not rules:
        return
    if len(monitors) != 1 or len(rules) != 1:
        fail(where, "the monitoring component renders one ServiceMonitor and one PrometheusRule")
        return
    for d in monitors + rules:
        if d.get("apiVersion") != OPERATOR_KINDS[d["kind"]]:
            fail(where, f"{d['kind']} must be {OPERATOR_KINDS[d['kind']]}, not {d.get('apiVersion')}")
    sm = monitors[0]
    services = [s for s in by_kind.get("Service", [])
                if all(pod_labels.get(k) == v for k, v in s["spec"].get("selector", {}).items())]
    ns = sm["metadata"].get("namespace")
    selected = [s for s in services
                if all(s["metadata"].get("labels", {}).get(k) == v
                       for k, v in sm["spec"].get("selector", {}).get("matchLabels", {}).items())
                and s["metadata"].get("namespace") in sm["spec"].get("namespaceSelector", {}).get("matchNames", [ns])]
    if len(selected) != 1:
        fail(where, f"the ServiceMonitor must select exactly the slackops Service, selects {len(selected)}")
        return
    ports = {p.get("name") for p in selected[0]["spec"].get("ports", [])}
    for ep in sm["spec"].get("endpoints", []):
        if ep.get("port") not in ports:
            fail(where, f"ServiceMonitor endpoint port {ep.get('port')!r} is not a port of the Service ({sorted(ports)})")
        if ep.get("path", "/metrics") != "/metrics":
            fail(where, f"ServiceMonitor endpoint path must be /metrics, not {ep.get('path')}")
    if not sm["spec"].get("endpoints"):
        fail(where, "the ServiceMonitor has no endpoint")
    if rules[0].get("spec", {}).get("groups") != load(RULES).get("groups"):
        fail(where, "the PrometheusRule's groups differ from deploy/monitoring/slackops.rules.yml")
    if rules[0]["metadata"].get("namespace") != selected[0]["metadata"].get("namespace"):
        fail(where, "the PrometheusRule must be in slackops' namespace")
    dashboards = [c for c in by_kind.get("ConfigMap", [])
                  if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    if len(dashboards) != 1 or json.loads(next(iter(dashboards[0].get("data", {}).values()), "{}")) \
            != json.loads(DASHBOARD.read_text()):
        fail(where, "expected one ConfigMap labelled grafana_dashboard: \"1\" holding deploy/monitoring/grafana-dashboard.json")


def check_halconfig() -> None:
    hal = ROOT / "halconfig"
    files = sorted(list(hal.rglob("*.yml")) + list(hal.rglob("*.yaml")))
    parsed = {}
    for f in files:
        try:
            parsed[f.relative_to(hal).as_posix()] = load(f)
        except yaml.YAMLError as e:
            fail(f"halconfig/{f.relative_to(hal)}", f"not valid YAML: {e}")
    for needed in ("echo-local.yml", "orca-local.yml", "gate-local.yml", "operator/spinnakerservice-patch.yml"):
        if needed not in parsed:
            fail("halconfig", f"{needed} is missing or does not parse")
    if problems:
        return

    echo = parsed["echo-local.yml"]
    rest = echo.get("rest", {})
    if rest.get("enabled") is not True or not rest.get("endpoints"):
        fail("halconfig/echo-local.yml", "rest.enabled must be true with at least one endpoint")
    for ep in rest.get("endpoints", []):
        if urlparse(ep.get("url", "")).path != "/spinnaker/events":
            fail("halconfig/echo-local.yml", f"endpoint url {ep.get('url')} must end in /spinnaker/events")
        if not str(ep.get("headers", {}).get("Authorization", "")).startswith("Bearer "):
            fail("halconfig/echo-local.yml", "the endpoint must send Authorization: Bearer <echo token>")
        if not isinstance(ep.get("retryCount"), int) or ep["retryCount"] < 2:
            fail("halconfig/echo-local.yml", "retryCount (total attempts) must be at least 2")
    events = (parsed["orca-local.yml"] or {}).get("echo", {}).get("events", {})
    if events.get("includeFullExecution") is not True or events.get("ignoreTaskEvents") is not True:
        fail("halconfig/orca-local.yml", "echo.events.includeFullExecution and ignoreTaskEvents must both be true")
    gate = parsed["gate-local.yml"] or {}
    enabled = [k for k in ("x509", "api-tokens", "header") if gate.get(k, {}).get("enabled") is True]
    if not enabled:
        fail("halconfig/gate-local.yml", "one of x509, api-tokens or header must be enabled")
    if gate.get("x509", {}).get("enabled") and not gate.get("default", {}).get("apiPort"):
        fail("halconfig/gate-local.yml", "x509 needs default.apiPort")

    op = parsed["operator/spinnakerservice-patch.yml"]
    where = "halconfig/operator/spinnakerservice-patch.yml"
    if op.get("kind") != "SpinnakerService":
        fail(where, "must be a SpinnakerService")
        return
    profiles = op.get("spec", {}).get("spinnakerConfig", {}).get("profiles", {})
    if profiles.get("orca") != parsed["orca-local.yml"]:
        fail(where, "profiles.orca differs from orca-local.yml")
    if profiles.get("gate") != gate:
        fail(where, "profiles.gate differs from gate-local.yml")

    def without_headers(e):
        return {**e, "rest": {**e["rest"], "endpoints": [{k: v for k, v in ep.items() if k != "headers"} for ep in e["rest"]["endpoints"]]}}

    if without_headers(profiles.get("echo", {"rest": {"endpoints": []}})) != without_headers(echo):
        fail(where, "profiles.echo differs from echo-local.yml (other than the header's secret reference)")


def check_slack_manifest() -> None:
    where = "slack-app-manifest.yaml"
    m = load(ROOT / where)
    routes = set(re.findall(r'\.route\("(/slack/[a-z]+)"', (ROOT / "src/startup.rs").read_text()))
    if not routes:
        fail(where, "cannot find the /slack/* routes in src/startup.rs")
    urls = [("slash command " + c["command"], c.get("url", "")) for c in m.get("features", {}).get("slash_commands", [])]
    settings = m.get("settings", {})
    urls.append(("interactivity", settings.get("interactivity", {}).get("request_url", "")))
    urls.append(("event subscriptions", settings.get("event_subscriptions", {}).get("request_url", "")))
    expected_paths = {"interactivity": "/slack/interactions", "event subscriptions": "/slack/events"}
    base = load(ROOT / "manifests/base/slackops.yaml")
    public = urlparse(str(base.get("server", {}).get("public_url", "")))
    ingress = load(ROOT / "manifests/components/ingress/ingress.yaml")
    ingress_hosts = {r.get("host") for r in ingress["spec"].get("rules", [])}
    for what, url in urls:
        u = urlparse(url)
        path = expected_paths.get(what, "/slack/commands")
        if u.path != path or path not in routes:
            fail(where, f"{what} URL {url} must use the route {path} that slackops serves")
        if u.netloc != public.netloc:
            fail(where, f"{what} URL host {u.netloc} differs from server.public_url in manifests/base/slackops.yaml")
        if u.netloc not in ingress_hosts:
            fail(where, f"{what} URL host {u.netloc} is not the Ingress host {sorted(ingress_hosts)}")
    commands = {c["command"] for c in m.get("features", {}).get("slash_commands", [])}
    configured = base.get("pipelines", {}).get("command", "/spinnaker")
    for needed in {configured, "/oncall", "/announce"}:
        if needed not in commands:
            fail(where, f"slash command {needed} is missing")
    if "reaction_added" not in settings.get("event_subscriptions", {}).get("bot_events", []):
        fail(where, "bot event reaction_added (outage announcements) is missing")


def check_socket_manifest() -> None:
    """slack-app-manifest-socket.yaml: Socket Mode on, no URL anywhere, the same app otherwise."""
    where = "slack-app-manifest-socket.yaml"
    m = load(ROOT / where)
    http = load(ROOT / "slack-app-manifest.yaml")
    settings = m.get("settings", {})
    if settings.get("socket_mode_enabled") is not True:
        fail(where, "settings.socket_mode_enabled must be true")
    if http.get("settings", {}).get("socket_mode_enabled") is not False:
        fail("slack-app-manifest.yaml", "settings.socket_mode_enabled must be false (the HTTP app)")

    def urls(node, path=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from urls(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from urls(v, f"{path}[{i}]")
        elif isinstance(node, str) and node.startswith("http"):
            yield path
    for p in urls({k: v for k, v in m.items() if k != "display_information"}):
        fail(where, f"{p} is a URL; a Socket Mode app has no request URLs")
    if settings.get("interactivity", {}).get("is_enabled") is not True:
        fail(where, "interactivity must be enabled (buttons and modals arrive over the socket)")
    commands = lambda d: {c["command"]: (c.get("description"), c.get("usage_hint")) for c in d.get("features", {}).get("slash_commands", [])}
    if commands(m) != commands(http):
        fail(where, "the slash commands differ from slack-app-manifest.yaml")
    if settings.get("event_subscriptions", {}).get("bot_events") != http.get("settings", {}).get("event_subscriptions", {}).get("bot_events"):
        fail(where, "the bot events differ from slack-app-manifest.yaml")
    if m.get("oauth_config") != http.get("oauth_config"):
        fail(where, "the scopes differ from slack-app-manifest.yaml")


def check_dockerfile(renderings: list[list[dict]]) -> None:
    """The image runs as the user the Deployment expects, `slackops serve`, on the listen port."""
    where = "Dockerfile"
    lines = [l.strip() for l in (ROOT / where).read_text().splitlines() if l.strip() and not l.strip().startswith("#")]
    froms = [i for i, l in enumerate(lines) if l.upper().startswith("FROM ")]
    if len(froms) < 2:
        fail(where, "must be a multi-stage build (a builder and a runtime stage)")
        return
    final = lines[froms[-1]:]
    users = [l.split()[1] for l in final if l.upper().startswith("USER ")]
    if not users or not re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1]):
        fail(where, f"the runtime stage must switch to a numeric non-root USER, not {users}")
        return
    uid = int(users[-1].split(":")[0])
    for docs in renderings:
        for d in docs:
            if d.get("kind") == "Deployment":
                run_as = d["spec"]["template"]["spec"].get("securityContext", {}).get("runAsUser")
                if run_as != uid:
                    fail(where, f"USER {uid} differs from the Deployment's runAsUser {run_as}")
    if not any(l.startswith("ENTRYPOINT") and "slackops" in l for l in final):
        fail(where, "the runtime stage's ENTRYPOINT must be the slackops binary")
    if not any(l.startswith("CMD") and "serve" in l for l in final):
        fail(where, "the runtime stage's CMD must be serve")
    if "EXPOSE 8080" not in final:
        fail(where, "the runtime stage must EXPOSE 8080 (server.listen's default port)")
    if not (ROOT / ".dockerignore").read_text().count("target/"):
        fail(".dockerignore", "must exclude target/")


def main(argv: list[str]) -> int:
    if argv == ["--sync-monitoring"]:
        sync_monitoring()
        return 0
    renderings = []
    for arg in argv:
        where, _, path = arg.partition("=")
        docs = load_all(Path(path))
        renderings.append(docs)
        check_rendering(where, docs)
    check_dockerfile(renderings)
    check_halconfig()
    check_slack_manifest()
    check_socket_manifest()
    check_monitoring_component()
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"ok: {len(argv)} renderings, the Dockerfile, halconfig/, both Slack app manifests")
    print(f"ok: {len(argv)} renderings, the Dockerfile, halconfig/, slack-app-manifest.yaml, "
          "the monitoring component")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

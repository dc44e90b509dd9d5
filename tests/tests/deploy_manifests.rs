//! The Kubernetes manifests (`k8s/`) and the image (`deploy/Dockerfile`), checked against the
//! real binaries rather than by eye:
//! - the kustomizations name files that exist, and the overlay patches objects of the base;
//! - the ConfigMap plus the Secrets the manifests reference is a configuration the binaries
//!   accept, and every container runs a binary the Dockerfile puts where the command says;
//! - the migrate Job's command, with its environment, migrates an empty database;
//! - each Deployment's container, started with its own command and environment (ConfigMap,
//!   Secret references, the vault Secret mounted where the manifest mounts it), answers its
//!   liveness and readiness probes with 200 on the port it declares, and exits 0 on SIGTERM
//!   within the pod's grace period.
//!
//! Only the listen address is moved to a free loopback port (after checking that the
//! ConfigMap's port is the container port), so tests can run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_yaml::Value;
use tradefleet::config::{Config, ConfigSources};
use tradefleet_tests::fleet::{Proc, free_port, http_get, terminate};
use tradefleet_tests::{Backend, TEST_VAULT_KEYS, TestDb, TestRedis, workspace_bin};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every YAML document of `path`.
fn documents(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            Value::deserialize(d).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn str_of<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for key in path {
        cur = &cur[*key];
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("{} is not a string in {v:?}", path.join(".")))
}

/// The objects of the base kustomization, in its resource order.
fn base_objects() -> Vec<Value> {
    let base = workspace().join("k8s/base");
    let kustomization = &documents(&base.join("kustomization.yaml"))[0];
    kustomization["resources"]
        .as_sequence()
        .expect("the base kustomization lists its resources")
        .iter()
        .flat_map(|r| documents(&base.join(r.as_str().unwrap())))
        .collect()
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in k8s/base"))
}

/// The values the test gives the Secrets the manifests reference; a reference to anything
/// else fails the test (the README would not tell an operator to create it).
struct Secrets {
    database_url: String,
    redis_url: String,
    vault_dir: tempfile::TempDir,
}

impl Secrets {
    fn value(&self, name: &str, key: &str) -> String {
        match (name, key) {
            ("tradefleet-secrets", "database-url") => self.database_url.clone(),
            ("tradefleet-secrets", "redis-url") => self.redis_url.clone(),
            ("tradefleet-vault", "keys") => TEST_VAULT_KEYS.to_string(),
            _ => panic!("the manifests reference secret {name}/{key}, which is not documented"),
        }
    }
}

/// How a container would be started: its command and the environment Kubernetes gives it,
/// with every path under a mounted Secret moved to a local directory holding the Secret's
/// files.
struct Launch {
    command: Vec<String>,
    env: BTreeMap<String, String>,
}

fn launch(objects: &[Value], pod_spec: &Value, secrets: &Secrets) -> Launch {
    let container = &pod_spec["containers"][0];
    let command: Vec<String> = container["command"]
        .as_sequence()
        .expect("the container names its command")
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let mut env = BTreeMap::new();
    for from in container["envFrom"].as_sequence().into_iter().flatten() {
        let name = str_of(from, &["configMapRef", "name"]);
        let map = object(objects, "ConfigMap", name);
        for (k, v) in map["data"].as_mapping().expect("ConfigMap data") {
            env.insert(
                k.as_str().unwrap().to_string(),
                v.as_str()
                    .unwrap_or_else(|| panic!("ConfigMap value of {k:?} is not a string"))
                    .to_string(),
            );
        }
    }
    for var in container["env"].as_sequence().into_iter().flatten() {
        let name = str_of(var, &["name"]).to_string();
        let value = if let Some(v) = var["value"].as_str() {
            v.to_string()
        } else {
            let secret = &var["valueFrom"]["secretKeyRef"];
            secrets.value(str_of(secret, &["name"]), str_of(secret, &["key"]))
        };
        env.insert(name, value);
    }
    // Secret volumes: write the files, and point paths under the mount at them.
    for mount in container["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        let mount_path = str_of(mount, &["mountPath"]);
        let volume = pod_spec["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("a mounted volume is declared");
        let secret_name = str_of(volume, &["secret", "secretName"]);
        let dir = secrets.vault_dir.path().join(secret_name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut mapped = false;
        for value in env.values_mut() {
            if let Some(rest) = value.strip_prefix(&format!("{mount_path}/")) {
                std::fs::write(dir.join(rest), secrets.value(secret_name, rest)).unwrap();
                *value = dir.join(rest).display().to_string();
                mapped = true;
            }
        }
        assert!(mapped, "nothing reads the secret mounted at {mount_path}");
    }
    Launch { command, env }
}

/// The installed path `/usr/local/bin/NAME` of a command, checked against the Dockerfile,
/// mapped to the binary cargo built.
fn binary(command: &str) -> PathBuf {
    let name = command
        .strip_prefix("/usr/local/bin/")
        .unwrap_or_else(|| panic!("{command} is not where the image installs binaries"));
    let dockerfile = std::fs::read_to_string(workspace().join("deploy/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("target/release/{name} "))
            || dockerfile.contains(&format!("target/release/{name}\n")),
        "deploy/Dockerfile does not copy {name} into the image"
    );
    assert!(
        dockerfile.contains("COPY --from=build /out/ /usr/local/bin/"),
        "deploy/Dockerfile installs the binaries elsewhere"
    );
    workspace_bin(name).unwrap()
}

#[test]
fn kustomizations_name_existing_files_and_objects() {
    let root = workspace().join("k8s");
    let objects = base_objects();
    assert!(!objects.is_empty());
    for o in &objects {
        assert!(
            o["apiVersion"].is_string() && o["kind"].is_string(),
            "{o:?}"
        );
        assert!(o["metadata"]["name"].is_string(), "{o:?}");
    }
    let overlay_dir = root.join("overlays/production");
    let overlay = &documents(&overlay_dir.join("kustomization.yaml"))[0];
    for r in overlay["resources"].as_sequence().unwrap() {
        let path = overlay_dir.join(r.as_str().unwrap());
        assert!(
            path.join("kustomization.yaml").exists() || path.exists(),
            "overlay resource {} is missing",
            path.display()
        );
    }
    for p in overlay["patches"].as_sequence().into_iter().flatten() {
        object(
            &objects,
            str_of(p, &["target", "kind"]),
            str_of(p, &["target", "name"]),
        );
    }
    // Services route to the port their pods declare.
    for service in objects.iter().filter(|o| o["kind"] == "Service") {
        let selector = &service["spec"]["selector"];
        let deployment = objects
            .iter()
            .find(|o| {
                o["kind"] == "Deployment"
                    && &o["spec"]["template"]["metadata"]["labels"] == selector
            })
            .unwrap_or_else(|| panic!("service {service:?} selects no deployment"));
        let ports = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"];
        for port in service["spec"]["ports"].as_sequence().unwrap() {
            let target = &port["targetPort"];
            assert!(
                ports
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|p| &p["name"] == target || &p["containerPort"] == target),
                "service port {port:?} targets no container port"
            );
        }
    }
}

#[tokio::test]
async fn the_manifests_start_the_real_binaries() {
    let db = TestDb::new(Backend::Postgres, false).await.unwrap();
    let redis = TestRedis::new().await.unwrap();
    let secrets = Secrets {
        database_url: db.url().to_string(),
        redis_url: redis.url().to_string(),
        vault_dir: tempfile::tempdir().unwrap(),
    };
    let objects = base_objects();

    // The migrate Job, on the empty database.
    let job = object(&objects, "Job", "tradefleet-migrate");
    let migrate = launch(&objects, &job["spec"]["template"]["spec"], &secrets);
    let status = Command::new(binary(&migrate.command[0]))
        .args(&migrate.command[1..])
        .env_clear()
        .envs(&migrate.env)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the migrate job's command failed: {status}"
    );
    tradefleet_migrations::check_current(db.conn())
        .await
        .expect("the migrate job leaves the schema current");

    for (name, listen_key) in [
        ("tradefleet-scheduler", "TRADEFLEET__SCHEDULER__LISTEN"),
        ("tradefleet-worker", "TRADEFLEET__WORKER__LISTEN"),
    ] {
        let deployment = object(&objects, "Deployment", name);
        let pod = &deployment["spec"]["template"]["spec"];
        let mut run = launch(&objects, pod, &secrets);

        // As deployed, the configuration loads, and listens on the container's port.
        let config = Config::load(&ConfigSources {
            file: None,
            env: run.env.clone().into_iter().collect(),
        })
        .unwrap_or_else(|e| panic!("{name}: the manifests' configuration is refused: {e}"));
        let listen = run
            .env
            .get(listen_key)
            .expect("the ConfigMap sets the listen address");
        let port: u16 = listen.rsplit(':').next().unwrap().parse().unwrap();
        let container = &pod["containers"][0];
        let declared = container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "http")
            .expect("an http port");
        assert_eq!(
            declared["containerPort"].as_u64(),
            Some(u64::from(port)),
            "{name}"
        );
        assert!(
            listen.starts_with("0.0.0.0:"),
            "{name}: the probes cannot reach {listen}"
        );
        let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
        if name == "tradefleet-worker" {
            assert!(
                Duration::from_millis(config.worker.shutdown_deadline_ms) < grace,
                "the worker's shutdown deadline outlasts the pod's grace period"
            );
        }

        let local = free_port().unwrap();
        run.env
            .insert(listen_key.into(), format!("127.0.0.1:{local}"));
        run.env.insert(
            "TRADEFLEET__REDIS__KEY_PREFIX".into(),
            redis.prefix().into(),
        );
        // Killed on drop, so a failed assertion does not leave it running.
        let mut proc = Proc {
            name,
            child: Command::new(binary(&run.command[0]))
                .args(&run.command[1..])
                .env_clear()
                .envs(&run.env)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
            port: local,
        };
        let child = &mut proc.child;
        for probe in ["readinessProbe", "livenessProbe"] {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["port"], declared["name"], "{name} {probe} port");
            let path = str_of(get, &["path"]);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some((200, _)) = http_get(local, path) {
                    break;
                }
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("{name} exited before its {probe} ({path}) passed: {status}");
                }
                assert!(
                    Instant::now() < deadline,
                    "{name}: {probe} {path} never answered 200"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let status = terminate(child, grace)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(status.success(), "{name} exited with {status} on SIGTERM");
    }
    redis.close().await.unwrap();
    db.close().await;
}

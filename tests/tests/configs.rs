//! Every configuration shipped in the repository loads through the real
//! loader, so documentation and deployment files cannot drift from the code.

use std::{collections::BTreeMap, process::Command};

use platform_tests::{binary, repository};

fn check(binary_name: &str, args: &[&str], env: &[(String, String)]) {
    let output = Command::new(binary(binary_name))
        .env_clear()
        .envs(env.iter().cloned())
        .args(args)
        .arg("--check-config")
        .output()
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "{binary_name} {args:?} {env:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn example_config_files_are_valid() {
    let dir = repository().join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("config/ exists") {
        let path = entry.expect("entry").path();
        let binary_name = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .expect("named after its binary");
        check(
            binary_name,
            &["--config", path.to_str().expect("utf-8 path")],
            &[],
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "one example per binary");
}

#[test]
fn kubernetes_config_files_are_valid_with_the_secrets_they_name() {
    // The manifests mount the signing key from the bff-secrets Secret; here
    // a key of the same kind stands in at another path.
    let key = gateway_core::auth::Es256Key::generate().expect("a key");
    let key_file =
        platform_tests::write_temp_file("k8s-internal-token-key.pem", &key.to_pkcs8_pem());
    for bff in ["bff-web", "bff-mobile", "bff-partner"] {
        let path = repository()
            .join("deploy/k8s")
            .join(bff)
            .join(format!("{bff}.toml"));
        check(
            bff,
            &["--config", path.to_str().expect("utf-8 path")],
            &[(
                "BFF_AUTH__INTERNAL_TOKEN__KEY_FILE".to_owned(),
                key_file.to_str().expect("utf-8 path").to_owned(),
            )],
        );
    }
}

/// The `BFF_*` variables each compose service sets, read from the map-style
/// `environment:` blocks of docker-compose.yml.
fn compose_environments() -> BTreeMap<String, Vec<(String, String)>> {
    let compose = std::fs::read_to_string(repository().join("docker-compose.yml"))
        .expect("docker-compose.yml");
    let mut environments: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut service = None;
    for line in compose.lines() {
        let service_header = line
            .strip_prefix("  ")
            .and_then(|rest| rest.strip_suffix(':'));
        if let Some(name) = service_header.filter(|name| !name.starts_with(' ')) {
            service = Some(name.to_owned());
        }
        let entry = line
            .trim_start()
            .split_once(": ")
            .filter(|(key, _)| key.starts_with("BFF_"));
        if let (Some(service), Some((key, value))) = (&service, entry) {
            environments
                .entry(service.clone())
                .or_default()
                .push((key.to_owned(), unquote(value).to_owned()));
        }
    }
    environments
}

/// A YAML scalar without its quotes (`"..."` or `'...'`).
fn unquote(value: &str) -> &str {
    ['"', '\'']
        .iter()
        .find_map(|quote| value.strip_prefix(*quote)?.strip_suffix(*quote))
        .unwrap_or(value)
}

#[test]
fn docker_compose_environments_are_valid() {
    let environments = compose_environments();
    for service in ["demo-services", "bff-web", "bff-mobile", "bff-partner"] {
        let env = environments
            .get(service)
            .unwrap_or_else(|| panic!("{service} sets BFF_ variables"));
        check(service, &[], env);
    }
}

#[test]
fn the_compose_partner_accepts_the_documented_demo_key() {
    let environments = compose_environments();
    let keys = environments["bff-partner"]
        .iter()
        .find(|(key, _)| key == "BFF_AUTH__API_KEYS")
        .map(|(_, value)| value.clone())
        .expect("bff-partner has an API key");
    let digest: String = ring::digest::digest(
        &ring::digest::SHA256,
        platform_tests::DEMO_PARTNER_API_KEY.as_bytes(),
    )
    .as_ref()
    .iter()
    .map(|byte| format!("{byte:02x}"))
    .collect();
    assert!(keys.contains(&digest), "{keys}");
}

//! template.yaml against the code: a resource for every function crate, every route of the
//! design, the settings each function's configuration requires, and no secret in plain text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_yaml_ng::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template() -> Value {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).expect("template.yaml is YAML")
}

fn resources(template: &Value) -> BTreeMap<String, Value> {
    let map = template["Resources"].as_mapping().expect("Resources");
    map.iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v.clone()))
        .collect()
}

/// The functions by the binary they run.
fn functions(template: &Value) -> BTreeMap<String, (String, Value)> {
    resources(template)
        .into_iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(name, r)| {
            let binary = r["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .expect("Binary")
                .to_string();
            (binary, (name, r))
        })
        .collect()
}

/// `!Ref X` and `!Sub ...` as text, for comparisons.
fn show(value: &Value) -> String {
    match value {
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, show(&tagged.value)),
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other).unwrap().trim().to_string(),
    }
}

/// The variables a function sees: the global ones and its own.
fn environment(template: &Value, function: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for vars in [
        &template["Globals"]["Function"]["Environment"]["Variables"],
        &function["Properties"]["Environment"]["Variables"],
    ] {
        if let Some(map) = vars.as_mapping() {
            names.extend(map.keys().map(|k| k.as_str().unwrap().to_string()));
        }
    }
    names
}

#[test]
fn every_function_crate_has_a_resource_built_as_the_design_says() {
    let template = template();
    let crates: BTreeSet<String> = std::fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let functions = functions(&template);
    assert_eq!(functions.keys().cloned().collect::<BTreeSet<_>>(), crates);
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Runtime"], "provided.al2023");
    assert_eq!(globals["Handler"], "bootstrap");
    assert_eq!(show(&globals["Architectures"][0]), "!Ref Architecture");
    assert_eq!(template["Parameters"]["Architecture"]["Default"], "arm64");
    for (binary, (name, function)) in &functions {
        assert_eq!(
            function["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{name}"
        );
        let timeout = function["Properties"]["Timeout"]
            .as_u64()
            .unwrap_or(globals["Timeout"].as_u64().unwrap());
        if binary.starts_with("github-") {
            assert!(timeout <= 10, "{name}: GitHub waits 10 s for an answer");
        }
    }
}

#[test]
fn every_route_of_the_design_exists() {
    let template = template();
    let functions = functions(&template);
    let mut http_routes = BTreeSet::new();
    for (binary, (_, function)) in &functions {
        if let Some(events) = function["Properties"]["Events"].as_mapping() {
            for event in events.values().filter(|e| e["Type"] == "HttpApi") {
                let props = &event["Properties"];
                http_routes.insert((
                    props["Method"].as_str().unwrap().to_string(),
                    props["Path"].as_str().unwrap().to_string(),
                    binary.clone(),
                ));
            }
        }
    }
    let expected: BTreeSet<(String, String, String)> = [
        ("POST", "/github/status_hook", "github-status"),
        ("POST", "/github/check_hook", "github-status"),
        ("POST", "/github/update_deploy_to_master", "github-push"),
        ("POST", "/github/pull_request_hook", "github-pull-request"),
        ("POST", "/github/pr_merge", "github-pull-request"),
        ("GET", "/status", "status-page"),
        ("GET", "/status.json", "status-page"),
    ]
    .iter()
    .map(|(m, p, b)| (m.to_string(), p.to_string(), b.to_string()))
    .collect();
    assert_eq!(http_routes, expected);

    let resources = resources(&template);
    let mut ws_routes = BTreeMap::new();
    for route in resources
        .values()
        .filter(|r| r["Type"] == "AWS::ApiGatewayV2::Route")
    {
        let target = show(&route["Properties"]["Target"]);
        let integration = target
            .trim_start_matches("!Sub integrations/${")
            .trim_end_matches('}')
            .to_string();
        let uri = show(&resources[&integration]["Properties"]["IntegrationUri"]);
        let function = functions
            .iter()
            .find(|(_, (name, _))| uri.contains(&format!("${{{name}.Arn}}")))
            .map(|(b, _)| b.clone());
        ws_routes.insert(
            route["Properties"]["RouteKey"]
                .as_str()
                .unwrap()
                .to_string(),
            function.unwrap_or_default(),
        );
    }
    assert_eq!(
        ws_routes,
        BTreeMap::from([
            ("$connect".to_string(), "ws-connect".to_string()),
            ("$default".to_string(), "ws-message".to_string()),
            ("$disconnect".to_string(), "ws-disconnect".to_string()),
        ])
    );
    let api = resources
        .values()
        .find(|r| r["Type"] == "AWS::ApiGatewayV2::Api")
        .unwrap();
    assert_eq!(api["Properties"]["ProtocolType"], "WEBSOCKET");
    assert_eq!(
        api["Properties"]["RouteSelectionExpression"],
        "$request.body.command"
    );
    for permission in resources
        .values()
        .filter(|r| r["Type"] == "AWS::Lambda::Permission")
    {
        assert!(
            show(&permission["Properties"]["SourceArn"]).contains("${WebSocketApi}"),
            "scoped with SourceArn"
        );
    }
    let schedule = |binary: &str| {
        let (_, function) = &functions[binary];
        let event = function["Properties"]["Events"]
            .as_mapping()
            .unwrap()
            .values()
            .next()
            .unwrap();
        show(&event["Properties"]["ScheduleExpression"])
    };
    assert_eq!(schedule("ws-keepalive"), "rate(1 minute)");
    assert_eq!(
        schedule("reconcile"),
        "!Sub rate(${ReconcileMinutes} minutes)"
    );
    let minutes = &template["Parameters"]["ReconcileMinutes"];
    assert_eq!(
        (minutes["Default"].as_u64(), minutes["MinValue"].as_u64()),
        (Some(5), Some(2))
    );
}

#[test]
fn each_function_gets_the_settings_its_configuration_requires() {
    // What `shared/src/setup.rs` reads for each function (besides defaulted settings).
    let webhook = [
        "TABLE_NAME",
        "CONNECTIONS_TABLE",
        "WEBSOCKET_ENDPOINT",
        "WEBHOOK_SECRET_ARN",
        "GITHUB_REPOSITORY",
    ];
    let github = [
        "GITHUB_TOKEN_ARN",
        "GITHUB_APP_ID",
        "GITHUB_APP_INSTALLATION_ID",
        "GITHUB_APP_PRIVATE_KEY_ARN",
    ];
    let sockets = ["TABLE_NAME", "CONNECTIONS_TABLE", "WEBSOCKET_ENDPOINT"];
    let required: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        (
            "github-status",
            [
                webhook.as_slice(),
                github.as_slice(),
                &["MIRROR_STATUS_CONTEXT"],
            ]
            .concat(),
        ),
        (
            "github-push",
            [webhook.as_slice(), github.as_slice()].concat(),
        ),
        (
            "github-pull-request",
            [
                webhook.as_slice(),
                github.as_slice(),
                &["MERGE_COMMITTER_NAME", "MERGE_COMMITTER_EMAIL"],
            ]
            .concat(),
        ),
        ("ws-connect", sockets.to_vec()),
        ("ws-disconnect", sockets.to_vec()),
        (
            "ws-message",
            [sockets.as_slice(), &["REPLAY_WINDOW_SECONDS"]].concat(),
        ),
        (
            "reconcile",
            [
                sockets.as_slice(),
                github.as_slice(),
                &[
                    "GITHUB_REPOSITORY",
                    "STALL_ALERT_MINUTES",
                    "REQUIRED_CONTEXTS",
                ],
            ]
            .concat(),
        ),
        ("status-page", vec!["STATUS_TOKEN_ARN", "STATUS_PUBLIC"]),
        (
            "ws-keepalive",
            [
                sockets.as_slice(),
                &[
                    "PING_INTERVAL_SECONDS",
                    "METASMOKE_WS_URL",
                    "METASMOKE_KEY_ARN",
                    "METASMOKE_BRIDGE_SKIP",
                    "BRIDGE_OVERLAP_SECONDS",
                ],
            ]
            .concat(),
        ),
    ]);
    let template = template();
    for (binary, (name, function)) in functions(&template) {
        let env = environment(&template, &function);
        for variable in &required[binary.as_str()] {
            assert!(env.contains(*variable), "{name} lacks {variable}");
        }
        for secret in [
            "WEBHOOK_SECRET",
            "GITHUB_TOKEN",
            "GITHUB_APP_PRIVATE_KEY",
            "METASMOKE_KEY",
        ] {
            assert!(
                !env.contains(secret),
                "{name}: {secret} must come from Secrets Manager, not plain"
            );
        }
    }
}

#[test]
fn secrets_are_no_echo_and_tables_are_as_the_store_expects() {
    let template = template();
    for parameter in ["WebhookSecret", "GitHubToken"] {
        assert_eq!(
            template["Parameters"][parameter]["NoEcho"], true,
            "{parameter}"
        );
    }
    let resources = resources(&template);
    let main = &resources["RelayTable"]["Properties"];
    let connections = &resources["ConnectionsTable"]["Properties"];
    for table in [main, connections] {
        assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
        assert_eq!(
            table["TimeToLiveSpecification"]["AttributeName"],
            build_relay::store::dynamodb::TTL_ATTRIBUTE
        );
    }
    assert_eq!(
        main["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    let keys = |table: &Value| -> Vec<String> {
        table["KeySchema"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|k| k["AttributeName"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(keys(main), ["pk", "sk"]);
    assert_eq!(keys(connections), ["connection_id"]);
}

#[test]
fn the_outputs_are_what_github_and_smokey_need() {
    let template = template();
    let outputs = template["Outputs"].as_mapping().unwrap();
    let value = |name: &str| show(&outputs[&Value::from(name)]["Value"]);
    for (output, path) in [
        ("StatusHookUrl", "/github/status_hook"),
        ("CheckHookUrl", "/github/check_hook"),
        ("PushHookUrl", "/github/update_deploy_to_master"),
        ("PullRequestHookUrl", "/github/pull_request_hook"),
        ("PrMergeUrl", "/github/pr_merge"),
    ] {
        assert!(value(output).ends_with(path), "{output}");
    }
    assert!(value("WebSocketUrl").starts_with("!Sub wss://"));
}

#[test]
fn the_status_page_only_reads_by_key() {
    let template = template();
    let (_, page) = &functions(&template)["status-page"];
    let mut granted: BTreeSet<(String, String)> = BTreeSet::new();
    for policy in page["Properties"]["Policies"]
        .as_sequence()
        .expect("Policies")
    {
        for statement in policy["Statement"].as_sequence().into_iter().flatten() {
            let actions = match &statement["Action"] {
                Value::Sequence(actions) => actions.iter().map(show).collect(),
                action => vec![show(action)],
            };
            for action in actions.into_iter().filter(|a| a.starts_with("dynamodb:")) {
                granted.insert((action, show(&statement["Resource"])));
            }
        }
    }
    let table = |name: &str| format!("!GetAtt {name}.Arn");
    let expected: BTreeSet<(String, String)> = [
        ("dynamodb:GetItem", table("RelayTable")),
        ("dynamodb:BatchGetItem", table("RelayTable")),
        ("dynamodb:Scan", table("ConnectionsTable")),
    ]
    .into_iter()
    .map(|(action, resource)| (action.to_string(), resource))
    .collect();
    assert_eq!(granted, expected);
}

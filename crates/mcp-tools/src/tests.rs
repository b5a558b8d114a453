//! Config parsing and name sanitising.

use std::path::Path;

use crate::sanitize::{tool_name, with_suffix};
use crate::{McpConfig, Transport};

fn parse(text: &str) -> Result<McpConfig, String> {
    McpConfig::parse(text, Path::new("mcp.json")).map_err(|e| e.to_string())
}

#[test]
fn claude_desktop_and_bedrock_engineer_configs_parse() {
    let c = parse(
        r#"{"mcpServers": {
            "filesystem": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]},
            "remote": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer x"}},
            "typed": {"type": "stdio", "command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC"}, "cwd": "/tmp"},
            "off": {"command": "x", "disabled": true}
        }}"#,
    )
    .expect("parses");
    let names: Vec<&str> = c.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["filesystem", "remote", "typed"]);
    match &c.servers[0].transport {
        Transport::Stdio {
            command,
            args,
            env,
            cwd,
        } => {
            assert_eq!(command, "npx");
            assert_eq!(args.len(), 3);
            assert!(env.is_empty() && cwd.is_none());
        }
        other => panic!("{other:?}"),
    }
    match &c.servers[1].transport {
        Transport::Http { url, headers } => {
            assert_eq!(url, "https://example.com/mcp");
            assert_eq!(headers["Authorization"], "Bearer x");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&c.servers[2].transport, Transport::Stdio { env, .. } if env["TZ"] == "UTC"));
    // VS Code's `servers` key, and an empty map.
    assert_eq!(parse(r#"{"servers": {}}"#).expect("parses"), McpConfig::default());
}

#[test]
fn bad_configs_name_the_value_and_the_shape() {
    let cases = [
        ("[]", "mcp.json: is an array, expected an object {\"mcpServers\""),
        ("{", "not JSON (line 1, column 1"),
        (r#"{"other": 1}"#, "`mcpServers` is missing; expected {\"mcpServers\""),
        (
            r#"{"mcpServers": []}"#,
            "`mcpServers` is an array, expected an object of servers by name",
        ),
        (
            r#"{"mcpServers": {"a": "npx"}}"#,
            "`mcpServers.a` is the string \"npx\", expected an object with `command`",
        ),
        (r#"{"mcpServers": {"a": {}}}"#, "`mcpServers.a` has neither `command`"),
        (
            r#"{"mcpServers": {"a": {"command": 7}}}"#,
            "`mcpServers.a.command` is a number (7), expected the program",
        ),
        (
            r#"{"mcpServers": {"a": {"command": "x", "args": "y"}}}"#,
            "`mcpServers.a.args` is the string \"y\", expected an array of strings",
        ),
        (
            r#"{"mcpServers": {"a": {"command": "x", "args": ["y", 2]}}}"#,
            "`mcpServers.a.args[1]` is a number (2), expected a string",
        ),
        (
            r#"{"mcpServers": {"a": {"command": "x", "env": {"K": 1}}}}"#,
            "`mcpServers.a.env.K` is a number (1), expected a string",
        ),
        (
            r#"{"mcpServers": {"a": {"url": "ftp://x"}}}"#,
            "`mcpServers.a.url` is the string \"ftp://x\", expected an http:// or https:// URL",
        ),
        (
            r#"{"mcpServers": {"a": {"url": "http://x", "command": "y"}}}"#,
            "`mcpServers.a` has both `command` and `url`",
        ),
        (
            r#"{"mcpServers": {"a": {"type": "sse", "url": "http://x"}}}"#,
            "`mcpServers.a.type` is \"sse\", the transport MCP replaced",
        ),
        (
            r#"{"mcpServers": {"a": {"type": "ws", "url": "http://x"}}}"#,
            "`mcpServers.a.type` is \"ws\", expected \"stdio\" or \"http\"",
        ),
        (
            r#"{"mcpServers": {"a": {"type": "stdio", "url": "http://x"}}}"#,
            "`mcpServers.a.command` is missing",
        ),
    ];
    for (text, want) in cases {
        let e = parse(text).expect_err(text);
        assert!(e.starts_with("MCP config mcp.json: "), "{text}: {e}");
        assert!(e.contains(want), "{text}:\n  got  {e}\n  want {want}");
    }
}

#[test]
fn names_follow_bedrocks_rule_and_stay_apart() {
    let ok = |n: &str| {
        n.len() <= 64 && !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    assert_eq!(tool_name("fs", "read_file"), "fs__read_file");
    assert_eq!(tool_name("my server", "get.weather/now"), "my_server__get_weather_now");
    assert_eq!(tool_name("日本", "ツール"), "_______");
    let long_a = tool_name("server", &"a".repeat(100));
    let long_b = tool_name("server", &format!("{}b", "a".repeat(99)));
    assert!(ok(&long_a) && ok(&long_b), "{long_a} {long_b}");
    assert_ne!(long_a, long_b);
    assert_eq!(long_a, tool_name("server", &"a".repeat(100)), "stable");
    let s = with_suffix(&long_a, 2);
    assert!(ok(&s) && s.ends_with("_2"), "{s}");
}

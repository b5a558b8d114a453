//! Unit tests of rendering, loading and the error paths.

use serde_json::json;

use super::*;
use crate::Error;

fn req(messages: serde_json::Value) -> RenderRequest {
    RenderRequest {
        messages: messages.as_array().cloned().unwrap_or_default(),
        ..RenderRequest::default()
    }
}

fn render(src: &str, r: &RenderRequest) -> Result<String, Error> {
    ChatTemplate::new(src, SpecialTokens::default())?.render(r)
}

fn user(text: &str) -> RenderRequest {
    req(json!([{"role": "user", "content": text}]))
}

#[test]
fn syntax_error_reports_line_and_column() {
    let err = ChatTemplate::new(
        "line one\n{{ messages[0] }}\n  {% if %}x{% endif %}",
        SpecialTokens::default(),
    )
    .expect_err("must not compile");
    match err {
        Error::Syntax { line, column, .. } => {
            assert_eq!(line, 3);
            assert!((3..=10).contains(&column), "column {column}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn raise_exception_carries_the_template_message() {
    let err = render(
        "{{ raise_exception('Only user roles: ' ~ messages[0].role) }}",
        &user("x"),
    )
    .unwrap_err();
    match err {
        Error::Raised { message } => assert_eq!(message, "Only user roles: user"),
        other => panic!("{other:?}"),
    }
    // Raised from inside a macro, too.
    let err = render(
        "{% macro f() %}{{ raise_exception('deep') }}{% endmacro %}{{ f() }}",
        &user("x"),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Raised { ref message } if message == "deep"),
        "{err:?}"
    );
}

#[test]
fn runaway_templates_hit_limits() {
    let t = ChatTemplate::new(
        "{% for i in range(10000) %}{% for j in range(10000) %}{{ j }}{% endfor %}{% endfor %}",
        SpecialTokens::default(),
    )
    .unwrap();
    let err = t.render(&user("x")).unwrap_err();
    assert!(
        matches!(err, Error::Limit { what, limit } if what.contains("fuel") && limit == Limits::default().fuel.unwrap()),
        "{err:?}"
    );
    let big = ChatTemplate::from_source(
        TemplateSource::Single("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}".into()),
        SpecialTokens::default(),
        Limits {
            fuel: None,
            max_output_bytes: 1_000_000,
        },
    )
    .unwrap();
    let err = big.render(&user("x")).unwrap_err();
    assert!(
        matches!(err, Error::Limit { what, limit: 1_000_000 } if what.contains("output")),
        "{err:?}"
    );
    assert!(err.to_string().contains("limit"), "{err}");
}

#[test]
fn strftime_now_reads_the_fixed_clock() {
    let mut r = user("x");
    r.now = chrono::NaiveDate::from_ymd_opt(2025, 1, 15).and_then(|d| d.and_hms_opt(12, 0, 0));
    assert_eq!(
        render("{{ strftime_now('%d %b %Y %H:%M') }}", &r).unwrap(),
        "15 Jan 2025 12:00"
    );
}

#[test]
fn python_printing_and_json() {
    let r =
        req(json!([{"role": "user", "content": [{"type": "text", "text": "it's", "n": null, "ok": true, "f": 1.5}]}]));
    assert_eq!(
        render("{{ messages[0].content }}|{{ messages[0].content|tojson }}", &r).unwrap(),
        r#"[{'type': 'text', 'text': "it's", 'n': None, 'ok': True, 'f': 1.5}]|[{"type": "text", "text": "it's", "n": null, "ok": true, "f": 1.5}]"#
    );
    assert_eq!(
        render("{{ {'b': 1, 'a': [1, 2]}|tojson(indent=2) }}", &user("x")).unwrap(),
        "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    2\n  ]\n}"
    );
    assert_eq!(
        render("{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}", &user("x")).unwrap(),
        r#"{"a": 2, "b": 1}"#
    );
    assert_eq!(
        render("{{ 1e16 }} {{ undefined_thing }}|{{ none }}", &user("x")).unwrap(),
        "1e+16 |None"
    );
}

#[test]
fn null_keys_are_dropped_and_reasoning_aliased() {
    let r = req(json!([{"role": "assistant", "content": null, "reasoning": "because"}]));
    assert_eq!(
        render("{{ messages[0].content is defined }} {{ messages[0]|list }}", &r).unwrap(),
        "False ['thinking', 'role', 'reasoning', 'reasoning_content']"
    );
    let r = req(json!([{"role": "assistant", "reasoning_content": "a", "thinking": "b"}]));
    assert_eq!(
        render("{{ messages[0]|items|list }}", &r).unwrap(),
        "[('thinking', 'b'), ('role', 'assistant'), ('reasoning_content', 'a')]"
    );
}

#[test]
fn special_tokens_and_kwargs() {
    let special = SpecialTokens {
        bos_token: Some("<s>".into()),
        ..SpecialTokens::default()
    };
    let t = ChatTemplate::new("{{ bos_token }}[{{ eos_token }}]{{ tools is none }}{{ flag }}", special).unwrap();
    let mut r = user("x");
    r.template_kwargs.insert("flag".into(), json!(false));
    assert_eq!(t.render(&r).unwrap(), "<s>[]TrueFalse");
    r.template_kwargs.insert("bos_token".into(), json!("<B>"));
    assert_eq!(t.render(&r).unwrap(), "<B>[]TrueFalse");
}

#[test]
fn python_string_methods() {
    let r = user("  a b  c ");
    assert_eq!(
        render("{{ messages[0].content.strip().split() }}{{ 'a,b,c'.rsplit(',', 1) }}{{ 'x</think>y'.split('</think>')[-1] }}", &r).unwrap(),
        "['a', 'b', 'c']['a,b', 'c']y"
    );
}

#[test]
fn generation_tags_are_accepted() {
    let src = "{% for m in messages %}\n  {%- generation -%}\n{{ m.content }}\n  {%- endgeneration %}\n{% endfor %}";
    assert_eq!(render(src, &user("hi")).unwrap(), "hi");
}

#[test]
fn empty_conversation_and_bad_messages_are_errors() {
    assert!(matches!(render("x", &req(json!([]))), Err(Error::Request(_))));
    assert!(matches!(render("x", &req(json!(["text"]))), Err(Error::Request(_))));
}

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn loading_precedence_and_named_templates() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(
        d,
        "tokenizer_config.json",
        r#"{"bos_token": {"__type": "AddedToken", "content": "<B>", "lstrip": false},
            "eos_token": "<E>",
            "chat_template": [{"name": "default", "template": "D{{ bos_token }}"},
                              {"name": "tool_use", "template": "T{{ eos_token }}"}]}"#,
    );
    let t = ChatTemplate::from_model_dir(d).unwrap();
    assert_eq!(t.render(&user("x")).unwrap(), "D<B>");
    let mut r = user("x");
    r.tools = Some(vec![]);
    assert_eq!(t.render(&r).unwrap(), "T<E>");
    write(d, "chat_template.json", r#"{"chat_template": "J"}"#);
    assert_eq!(
        ChatTemplate::from_model_dir(d).unwrap().render(&user("x")).unwrap(),
        "J"
    );
    write(d, "chat_template.jinja", "F\n");
    // keep_trailing_newline = false: the final newline is dropped.
    assert_eq!(
        ChatTemplate::from_model_dir(d).unwrap().render(&user("x")).unwrap(),
        "F"
    );
}

#[test]
fn missing_template_lists_files_looked_at() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "tokenizer_config.json", r#"{"eos_token": "</s>"}"#);
    let err = ChatTemplate::from_model_dir(tmp.path()).unwrap_err();
    let msg = err.to_string();
    for f in ["chat_template.jinja", "chat_template.json", "tokenizer_config.json"] {
        assert!(msg.contains(f), "{msg}");
    }
}

#[test]
fn malformed_tokenizer_config_names_file_line_and_expectation() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "tokenizer_config.json",
        "{\n  \"eos_token\": \"</s>\",\n  \"chat_template\": oops\n}",
    );
    let err = ChatTemplate::from_model_dir(tmp.path()).unwrap_err();
    match &err {
        Error::Json { path, line, .. } => {
            assert!(path.ends_with("tokenizer_config.json"));
            assert_eq!(*line, 3);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("expected"), "{err}");
    write(tmp.path(), "tokenizer_config.json", r#"{"chat_template": 42}"#);
    let err = ChatTemplate::from_model_dir(tmp.path()).unwrap_err();
    assert!(
        matches!(err, Error::Field { ref field, .. } if field == "chat_template"),
        "{err:?}"
    );
}

#[test]
fn tojson_on_request_json_matches_python_json_dumps() {
    // Request JSON is written straight from the render's tree; every option must still behave like json.dumps.
    let r = RenderRequest {
        tools: Some(vec![json!({"b": "é\"\n", "a": [1, 2.5, {}, []], "c": null})]),
        ..user("hi")
    };
    let cases = [
        (
            "tools[0] | tojson",
            r#"{"b": "é\"\n", "a": [1, 2.5, {}, []], "c": null}"#,
        ),
        (
            "tools[0] | tojson(sort_keys=true)",
            r#"{"a": [1, 2.5, {}, []], "b": "é\"\n", "c": null}"#,
        ),
        (
            "tools[0] | tojson(ensure_ascii=true)",
            r#"{"b": "\u00e9\"\n", "a": [1, 2.5, {}, []], "c": null}"#,
        ),
        (
            "tools[0] | tojson(indent=2)",
            "{\n  \"b\": \"é\\\"\\n\",\n  \"a\": [\n    1,\n    2.5,\n    {},\n    []\n  ],\n  \"c\": null\n}",
        ),
        (
            "tools[0] | tojson(separators=(',', ':'))",
            r#"{"b":"é\"\n","a":[1,2.5,{},[]],"c":null}"#,
        ),
        (
            "tools | tojson",
            r#"[{"b": "é\"\n", "a": [1, 2.5, {}, []], "c": null}]"#,
        ),
        ("messages[0] | tojson", r#"{"role": "user", "content": "hi"}"#),
    ];
    for (expr, want) in cases {
        assert_eq!(render(&format!("{{{{ {expr} }}}}"), &r).unwrap(), want, "{expr}");
    }
}

#[test]
fn renders_in_a_row_do_not_leak_into_each_other() {
    // Renders reuse the buffers of earlier ones: a long request, then a short one, then the long one again.
    let t = ChatTemplate::new(
        "{% for m in messages %}{{ m.role }}={{ m.content }};{% endfor %}{{ tools | tojson }}",
        SpecialTokens::default(),
    )
    .unwrap();
    let long = RenderRequest {
        tools: Some(vec![json!({"name": "t", "parameters": {"type": "object"}})]),
        ..req(json!([{"role": "user", "content": "a".repeat(300)}, {"role": "assistant", "content": "b"}]))
    };
    let short = user("c");
    let first = t.render(&long).unwrap();
    assert_eq!(t.render(&short).unwrap(), "user=c;null");
    assert_eq!(t.render(&long).unwrap(), first);
    let clone = t.clone();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let t = clone.clone();
            let r = long.clone();
            std::thread::spawn(move || (0..50).map(|_| t.render(&r).unwrap()).collect::<Vec<_>>())
        })
        .collect();
    for h in threads {
        assert!(h.join().unwrap().iter().all(|o| *o == first));
    }
}

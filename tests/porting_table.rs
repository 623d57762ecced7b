//! `docs/PORTING.md` maps every public function of libnetfilter_queue to libnfq: this test
//! reads the function declarations of the installed headers
//! (`/usr/include/libnetfilter_queue/*.h`, or `$NFQ_INCLUDE_DIR`) and fails when one of them
//! has no row in the document's tables. No kernel needed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Where the headers are (the `-dev` package that building nfq-sys needs installs them).
fn header_dir() -> PathBuf {
    std::env::var_os("NFQ_INCLUDE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/include/libnetfilter_queue"))
}

/// Removes comments and preprocessor lines (with their continuations).
fn strip(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix("/*") {
            rest = tail.find("*/").map_or("", |end| &tail[end + 2..]);
            out.push(' ');
        } else if let Some(tail) = rest.strip_prefix("//") {
            rest = tail.find('\n').map_or("", |end| &tail[end..]);
        } else {
            let c = rest.chars().next().expect("non-empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    let mut kept = String::with_capacity(out.len());
    let mut continued = false;
    for line in out.lines() {
        let directive = continued || line.trim_start().starts_with('#');
        continued = directive && line.trim_end().ends_with('\\');
        if !directive {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

/// Removes every `__attribute__((...))` (balanced parentheses).
fn drop_attributes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("__attribute__") {
        out.push_str(&rest[..at]);
        rest = &rest[at + "__attribute__".len()..];
        let mut depth = 0usize;
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                c if c.is_whitespace() && depth == 0 => {}
                _ if depth == 0 => break,
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The names of the functions declared in a C header: each top-level statement (outside
/// braces, split at `;`) that is not a typedef and has a parenthesis after an identifier
/// declares the function of that identifier.
fn declared_functions(header: &str) -> BTreeSet<String> {
    let text = drop_attributes(&strip(header).replace("extern \"C\" {", " "));
    let mut names = BTreeSet::new();
    let mut statement = String::new();
    let mut braces: usize = 0;
    for c in text.chars() {
        match c {
            '{' => braces += 1,
            // `saturating_sub`: the `}` closing `extern "C" {` has no opening brace any more.
            '}' => braces = braces.saturating_sub(1),
            ';' if braces == 0 => {
                if let Some(name) = function_name(&statement) {
                    names.insert(name);
                }
                statement.clear();
            }
            _ if braces == 0 => statement.push(c),
            _ => {}
        }
    }
    names
}

fn function_name(statement: &str) -> Option<String> {
    let statement = statement.trim();
    if statement.starts_with("typedef") {
        return None;
    }
    let open = statement.find('(')?;
    let before = statement[..open].trim_end();
    let start = before
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_ident(c))
        .last()
        .map(|(i, _)| i)?;
    let name = &before[start..];
    // `int (*fp)(...)` and the like: not a function declaration.
    (!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit())).then(|| name.to_string())
}

/// The names in the first cell of every table row of a Markdown document: each backticked
/// word there (`` `nfq_open` ``, `` `nfq_get_uid` / `nfq_get_gid` ``).
fn table_names(markdown: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in markdown.lines() {
        let Some(row) = line.trim().strip_prefix('|') else {
            continue;
        };
        let first = row.split('|').next().unwrap_or("");
        for (i, part) in first.split('`').enumerate() {
            if i % 2 == 1 {
                names.insert(part.trim().trim_end_matches("()").to_string());
            }
        }
    }
    names
}

/// The declared names that no table row documents.
fn missing(declared: &BTreeSet<String>, documented: &BTreeSet<String>) -> Vec<String> {
    declared.difference(documented).cloned().collect()
}

fn headers() -> Vec<(PathBuf, String)> {
    let dir = header_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): install libnetfilter_queue's development headers \
             (libnetfilter-queue-dev), or point NFQ_INCLUDE_DIR at them",
            dir.display()
        )
    });
    let mut headers: Vec<(PathBuf, String)> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "h"))
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            (p, text)
        })
        .collect();
    headers.sort();
    headers
}

#[test]
fn every_header_function_is_in_the_porting_table() {
    let mut declared = BTreeSet::new();
    for (_, text) in headers() {
        declared.extend(declared_functions(&text));
    }
    // The parser must see the declarations in all their shapes: one line, the return type on
    // the line before, after `__attribute__((deprecated))`, in each header.
    for name in [
        "nfq_open",
        "nfq_get_msg_packet_hdr",
        "nfq_set_verdict_mark",
        "nfq_nlmsg_put",
        "pktb_alloc",
        "nfq_ip_snprintf",
        "nfq_ip6_mangle",
        "nfq_tcp_get_payload_len",
        "nfq_udp_snprintf",
    ] {
        assert!(
            declared.contains(name),
            "header parser missed {name}: {declared:?}"
        );
    }
    assert!(
        declared.len() >= 80, // 83 in libnetfilter_queue 1.0.5
        "suspiciously few functions found ({}): {declared:?}",
        declared.len()
    );

    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/PORTING.md");
    let doc = std::fs::read_to_string(&doc_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", doc_path.display()));
    let missing = missing(&declared, &table_names(&doc));
    assert!(
        missing.is_empty(),
        "functions declared in {} but missing from the tables of docs/PORTING.md: {missing:?}",
        header_dir().display()
    );
}

#[test]
fn the_checks_catch_what_they_should() {
    let header = r#"
#ifndef X_H
#define X_H \
    continued
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
/* int commented_out(void); */
// int also_commented(void);
struct opaque;
extern int some_variable;
typedef int callback_type(struct opaque *o, void *data);
struct with_body { int x; int (*fp)(int); } __attribute__ ((packed));
enum { A = (1 << 0), B = (1 << 1) };
extern struct opaque *
                make_opaque(int family,
                            void *data);
extern __attribute__((deprecated))
int old_function(struct opaque *o);
void plain(void);
#ifdef __cplusplus
} /* extern "C" */
#endif
#endif
"#;
    let found: Vec<String> = declared_functions(header).into_iter().collect();
    assert_eq!(found, ["make_opaque", "old_function", "plain"]);

    let doc = "
| C function | libnfq |
|---|---|
| `plain` | something |
| `make_opaque` / `old_function()` | something with `not_a_name` |
text mentioning `outside_a_table`
";
    let names = table_names(doc);
    assert!(names.contains("plain") && names.contains("make_opaque"));
    assert!(names.contains("old_function"));
    assert!(!names.contains("not_a_name") && !names.contains("outside_a_table"));
    let declared: BTreeSet<String> = ["plain", "gone"].map(String::from).into();
    assert_eq!(missing(&declared, &names), ["gone"]);
}

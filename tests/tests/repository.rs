//! Checks on the repository itself: it cites only documents it contains, and
//! gateway-core's modules depend on each other one way.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use platform_tests::repository;

/// Every text file of the repository that code or docs live in.
fn text_files(root: &Path) -> Vec<PathBuf> {
    const SKIPPED_DIRS: [&str; 3] = ["target", ".git", "node_modules"];
    const TEXT: [&str; 8] = ["rs", "md", "toml", "yml", "yaml", "json", "sh", "txt"];
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("a readable directory") {
            let path = entry.expect("a directory entry").path();
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("");
            if path.is_dir() {
                if !SKIPPED_DIRS.contains(&name) {
                    pending.push(path);
                }
            } else if path
                .extension()
                .and_then(|extension| extension.to_str())
                .is_some_and(|extension| TEXT.contains(&extension))
                || path.parent().is_some_and(|parent| {
                    let dir = parent.file_name().and_then(|name| name.to_str());
                    matches!(dir, Some("scripts" | ".ci" | "deploy"))
                })
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The relative link targets of a Markdown text: `[text](target)`.
fn markdown_links(text: &str) -> Vec<&str> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            let target = &rest[..rest.find(')')?];
            let target = target.split('#').next().unwrap_or_default();
            let external = target.is_empty()
                || target.contains("://")
                || target.starts_with("mailto:")
                || target.contains(' ');
            (!external).then_some(target)
        })
        .collect()
}

/// Paths of documents a text names outright (`docs/architecture.md`).
fn named_documents(text: &str) -> Vec<&str> {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "-_./".contains(c);
    text.match_indices(".md")
        .filter_map(|(at, _)| {
            let after = text[at + 3..].chars().next();
            if after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            let start = text[..at]
                .rfind(|c: char| !is_path_char(c))
                .map_or(0, |index| index + 1);
            let name = &text[start..at + 3];
            (name.len() > 3 && !name.starts_with("//")).then_some(name)
        })
        .collect()
}

#[test]
fn code_and_docs_cite_only_documents_in_the_repository() {
    let root = repository();
    let mut broken = Vec::new();
    for file in text_files(&root) {
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        // This file spells out what it looks for.
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if shown == "tests/tests/repository.rs" {
            continue;
        }
        let dir = file.parent().expect("a file has a directory");
        for (number, line) in text.lines().enumerate() {
            let at = format!("{shown}:{}", number + 1);
            // A section sign cites a numbered document; only RFCs, which are public, may be cited that way.
            for (index, _) in line.match_indices('§') {
                let before = line[..index].trim_end();
                let cites_rfc = before.rsplit(' ').next().is_some_and(|word| {
                    word.chars().all(|c| c.is_ascii_digit()) && !word.is_empty()
                }) && before.contains("RFC");
                if !cites_rfc {
                    broken.push(format!(
                        "{at}: cites a section of an outside document: {line}"
                    ));
                }
            }
            // The design notes the project started from, and where they lived.
            let outside = [
                format!("{}.md", "DESIGN"),
                format!("{}.md", "CONVENTIONS"),
                format!("../{}", "shared"),
            ];
            for needle in &outside {
                if line.contains(needle.as_str()) {
                    broken.push(format!(
                        "{at}: cites {needle}, which is not in the repository"
                    ));
                }
            }
        }
        let is_markdown = file.extension().is_some_and(|extension| extension == "md");
        let links = if is_markdown {
            markdown_links(&text)
        } else {
            Vec::new()
        };
        for target in links {
            if !dir.join(target).exists() {
                broken.push(format!("{shown}: links to {target}, which does not exist"));
            }
        }
        for name in named_documents(&text) {
            if !dir.join(name).exists() && !root.join(name).exists() {
                broken.push(format!(
                    "{shown}: names {name}, which is not in the repository"
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_citation_check_sees_what_it_must() {
    assert_eq!(
        markdown_links("see [the design](docs/architecture.md#path) and [x](https://a.b/c.md)"),
        ["docs/architecture.md"]
    );
    assert_eq!(
        named_documents("// the request path of `docs/architecture.md`; see README.md."),
        ["docs/architecture.md", "README.md"]
    );
    assert!(named_documents("a .mdx file and https://x.io/a.md").is_empty());
}

/// The top-level modules of gateway-core that `text` uses through `crate::`.
fn crate_dependencies(text: &str, root_exports: &BTreeMap<String, String>) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut modules = BTreeSet::new();
    let mut resolve = |name: &str| {
        let module = root_exports.get(name).map_or(name, String::as_str);
        modules.insert(module.to_owned());
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::B, c, d::{E, F}};`: the first segment of each top-level item.
            let mut depth = 0;
            let mut item_start = true;
            let mut name = String::new();
            let mut flush = |name: &mut String| {
                if !name.is_empty() {
                    resolve(name);
                    name.clear();
                }
            };
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        flush(&mut name);
                        item_start = true;
                    }
                    c if item_start && (c.is_alphanumeric() || c == '_') => name.push(c),
                    c if item_start && c.is_whitespace() && name.is_empty() => {}
                    _ if item_start => {
                        flush(&mut name);
                        item_start = false;
                    }
                    _ => {}
                }
            }
            flush(&mut name);
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                resolve(&name);
            }
        }
    }
    modules
}

/// gateway-core's top-level modules and the modules each uses.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = repository().join("gateway-core/src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    // `pub use context::RequestContext;` makes `crate::RequestContext` a use of `context`.
    let root_exports: BTreeMap<String, String> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("pub use ")?.strip_suffix(';'))
        .filter_map(|path| {
            let (module, item) = path.split_once("::")?;
            Some((item.rsplit("::").next()?.to_owned(), module.to_owned()))
        })
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in text_files(&src) {
        let relative = file.strip_prefix(&src).expect("inside src");
        let module = relative
            .components()
            .next()
            .and_then(|component| component.as_os_str().to_str())
            .map(|name| name.trim_end_matches(".rs").to_owned())
            .expect("a module name");
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable");
        let mut uses = crate_dependencies(&text, &root_exports);
        uses.remove(&module);
        graph.entry(module).or_default().extend(uses);
    }
    graph
}

#[test]
fn gateway_core_modules_form_no_cycle() {
    let graph = module_graph();
    assert!(
        graph.len() >= 10 && graph["bff"].contains("server") && graph["auth"].contains("lifecycle"),
        "the parser sees the modules and their uses: {graph:?}"
    );
    // Depth-first search for a back edge.
    fn visit<'a>(
        module: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|seen| *seen == module) {
            let mut cycle: Vec<String> = path[start..].iter().map(|m| (*m).to_owned()).collect();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if !done.insert(module) {
            return None;
        }
        path.push(module);
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        let cycle = visit(module, &graph, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "gateway-core modules form a cycle: {}",
            cycle.unwrap_or_default().join(" -> ")
        );
    }
}

#[test]
fn gateway_core_modules_use_only_those_above_them_in_the_architecture() {
    let architecture = std::fs::read_to_string(repository().join("docs/architecture.md"))
        .expect("docs/architecture.md");
    let section = architecture
        .split("## gateway-core's modules")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the modules section");
    let order: Vec<&str> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `")?.split('`').next())
        .collect();
    let graph = module_graph();
    assert_eq!(
        order.iter().copied().collect::<BTreeSet<_>>(),
        graph.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        "the table lists every module once"
    );
    for (position, module) in order.iter().enumerate() {
        for used in &graph[*module] {
            let used_at = order.iter().position(|name| name == used);
            assert!(
                used_at.is_some_and(|at| at < position),
                "{module} uses {used}, which is not above it in docs/architecture.md"
            );
        }
    }
}

/// Every error code the BFFs can answer with: the string literals of the
/// `code` functions of the errors of gateway-core and of each BFF (and of
/// the code of undescribed errors), the `code: "..."` of the errors
/// that carry theirs, and the constants named as their code
/// (`pub const ORDER_REJECTED: &str = "ORDER_REJECTED";`) that several
/// BFFs share.
fn codes_in_the_code() -> BTreeSet<String> {
    let is_code =
        |text: &str| text.len() > 2 && text.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
    let mut codes = BTreeSet::new();
    let sources = [
        "gateway-core",
        "shared-schema",
        "bff-web",
        "bff-mobile",
        "bff-partner",
    ]
    .into_iter()
    .flat_map(|krate| text_files(&repository().join(krate).join("src")));
    for file in sources {
        let text = std::fs::read_to_string(&file).expect("readable");
        for signature in [
            "fn code(&self) -> &'static str {",
            "fn generic_code(status: StatusCode) -> &'static str {",
        ] {
            for (at, _) in text.match_indices(signature) {
                let body = &text[at + signature.len()..];
                let mut depth = 1;
                let end = body
                    .char_indices()
                    .find_map(|(index, c)| {
                        match c {
                            '{' => depth += 1,
                            '}' => depth -= 1,
                            _ => {}
                        }
                        (depth == 0).then_some(index)
                    })
                    .expect("a closed body");
                for literal in body[..end].split('"').skip(1).step_by(2) {
                    if is_code(literal) {
                        codes.insert(literal.to_owned());
                    }
                }
            }
        }
        for line in text.lines() {
            if let Some((name, value)) = line
                .trim()
                .strip_prefix("pub const ")
                .and_then(|constant| constant.split_once(": &str = \""))
                && value.strip_suffix("\";") == Some(name)
                && is_code(name)
            {
                codes.insert(name.to_owned());
            }
        }
        for (at, _) in text.match_indices("code: \"") {
            let literal = text[at + "code: \"".len()..]
                .split('"')
                .next()
                .expect("a closed literal");
            if is_code(literal) {
                codes.insert(literal.to_owned());
            }
        }
    }
    codes
}

#[test]
fn the_error_table_lists_every_code_the_gateway_can_answer_with() {
    let reference = std::fs::read_to_string(repository().join("docs/configuration.md"))
        .expect("docs/configuration.md");
    let table = reference
        .split("## Error codes")
        .nth(1)
        .expect("an error codes section");
    let documented: BTreeSet<String> = table
        .lines()
        .filter(|line| line.starts_with('|'))
        .filter_map(|line| line.split('|').nth(2))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        .map(str::to_owned)
        .collect();
    let emitted = codes_in_the_code();
    assert!(
        emitted.len() >= 30 && emitted.contains("RATE_LIMITED") && emitted.contains("CLIENT_ERROR"),
        "the scan finds the codes: {emitted:?}"
    );
    let undocumented: Vec<_> = emitted.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&emitted).collect();
    assert!(
        undocumented.is_empty(),
        "codes missing from the table: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "codes in the table that nothing emits: {unknown:?}"
    );
}

#[test]
fn the_cycle_check_reads_grouped_and_plain_uses() {
    let exports = BTreeMap::from([("Error".to_owned(), "error".to_owned())]);
    let uses = crate_dependencies(
        "use crate::{\n    Error,\n    config::{ConfigError, Validate},\n    lifecycle::Shutdown,\n};\n// crate::server in a comment\nfn f() { crate::observability::x(); }",
        &exports,
    );
    assert_eq!(
        uses.into_iter().collect::<Vec<_>>(),
        ["config", "error", "lifecycle", "observability"]
    );
}

//! Hard limits on what one GraphQL request may ask for, checked before
//! anything resolves and before any service is called.
//!
//! The endpoint faces the internet, and a GraphQL document is a program:
//! its size, its tokens, its depth, its aliases, its root fields and its
//! directives each bound the work a single request can demand. The text is
//! checked before it is parsed (bytes, then tokens, so the parser never
//! sees a pathological document), the parsed document before it is
//! validated and executed. Each refusal is a GraphQL error with a stable
//! `extensions.code` and no `data`. The errors of an executed request are
//! capped at `max_errors`, so a flood of failing fields cannot make the
//! answer itself large.
//!
//! A query's cost (one point per field, a list's selection once per item of
//! its `first`) is also what it takes from the caller's rate-limit bucket.
//!
//! async-graphql counts depth and complexity only while validating, and
//! neither tokens, aliases, root fields nor a document's directives, with
//! messages but no codes and no cost to charge: these checks are written
//! here, on its parsed document types.

use async_graphql::{
    ErrorExtensionValues, ServerError, Value, Variables,
    parser::types::{ExecutableDocument, Field, Selection, SelectionSet},
};

use crate::MobileSettings;

/// What one request refused for its size or shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LimitExceeded {
    /// The query text is too long.
    #[error("the query is {size} bytes; at most {max} are accepted")]
    Size { size: usize, max: usize },
    /// The query has too many lexical tokens.
    #[error("the query has more than {max} tokens")]
    Tokens { max: usize },
    /// The query costs too much.
    #[error("the query costs {cost}; at most {max} is accepted")]
    Complexity { cost: usize, max: usize },
    /// The query nests fields too deep.
    #[error("the query is nested {depth} fields deep; at most {max} are accepted")]
    Depth { depth: usize, max: usize },
    /// The query renames too many fields.
    #[error("the query has {count} aliases; at most {max} are accepted")]
    Aliases { count: usize, max: usize },
    /// An operation selects too many fields at its root.
    #[error("an operation selects {count} root fields; at most {max} are accepted")]
    RootFields { count: usize, max: usize },
    /// A batch holds too many operations.
    #[error("the batch holds {count} operations; at most {max} are accepted")]
    Operations { count: usize, max: usize },
    /// The query carries too many directives.
    #[error("the query has {count} directives; at most {max} are accepted")]
    Directives { count: usize, max: usize },
}

impl LimitExceeded {
    /// The stable code in `extensions.code`.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Size { .. } => "QUERY_TOO_LARGE",
            Self::Tokens { .. } => "QUERY_TOO_MANY_TOKENS",
            Self::Depth { .. } => "QUERY_TOO_DEEP",
            Self::Complexity { .. } => "QUERY_TOO_COMPLEX",
            Self::Aliases { .. } => "QUERY_TOO_MANY_ALIASES",
            Self::RootFields { .. } => "QUERY_TOO_MANY_ROOT_FIELDS",
            Self::Directives { .. } => "QUERY_TOO_MANY_DIRECTIVES",
            Self::Operations { .. } => "BATCH_TOO_LARGE",
        }
    }

    /// The refusal as a GraphQL response: this one error, no `data`.
    pub(crate) fn response(&self) -> async_graphql::Response {
        refusal(self.code(), &self.to_string())
    }
}

/// A request refused before it ran, as a GraphQL response: one error with
/// `message` and `code` in `extensions.code`, no `data`.
pub(crate) fn refusal(code: &'static str, message: &str) -> async_graphql::Response {
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", code);
    let mut error = ServerError::new(message, None);
    error.extensions = Some(extensions);
    async_graphql::Response::from_errors(vec![error])
}

/// The limits of `[mobile]`, as the requests are checked against them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueryLimits {
    max_bytes: usize,
    max_tokens: usize,
    max_depth: usize,
    max_complexity: usize,
    max_aliases: usize,
    max_root_fields: usize,
    max_directives: usize,
    max_errors: usize,
    max_batch_operations: usize,
}

impl QueryLimits {
    pub(crate) fn new(settings: &MobileSettings) -> Self {
        Self {
            max_bytes: settings.max_query_bytes,
            max_tokens: settings.max_query_tokens,
            max_depth: settings.max_query_depth,
            max_complexity: settings.max_query_complexity,
            max_aliases: settings.max_aliases,
            max_root_fields: settings.max_root_fields,
            max_directives: settings.max_directives,
            max_errors: settings.max_errors,
            max_batch_operations: settings.max_batch_operations,
        }
    }

    /// Checks the number of operations of a batch, before any runs.
    pub(crate) fn check_batch(&self, operations: usize) -> Result<(), LimitExceeded> {
        if operations > self.max_batch_operations {
            return Err(LimitExceeded::Operations {
                count: operations,
                max: self.max_batch_operations,
            });
        }
        Ok(())
    }

    /// Checks the text before it is parsed: its bytes, then its tokens.
    pub(crate) fn check_text(&self, query: &str) -> Result<(), LimitExceeded> {
        if query.len() > self.max_bytes {
            return Err(LimitExceeded::Size {
                size: query.len(),
                max: self.max_bytes,
            });
        }
        if count_tokens(query, self.max_tokens) > self.max_tokens {
            return Err(LimitExceeded::Tokens {
                max: self.max_tokens,
            });
        }
        Ok(())
    }

    /// Checks the parsed document: every operation's depth, cost and root
    /// fields (fragments expanded), and the aliases and directives of the
    /// whole document. Returns what the costliest operation costs, to be
    /// charged to the caller's rate limit.
    pub(crate) fn check_document(
        &self,
        document: &ExecutableDocument,
        variables: &Variables,
    ) -> Result<usize, LimitExceeded> {
        let mut costliest = 0;
        let mut shape = Shape::default();
        for (_, operation) in document.operations.iter() {
            shape.directives += operation.node.directives.len();
            shape.add_selections(&operation.node.selection_set.node);
            let root_fields = root_fields(document, &operation.node.selection_set.node);
            if root_fields > self.max_root_fields {
                return Err(LimitExceeded::RootFields {
                    count: root_fields,
                    max: self.max_root_fields,
                });
            }
            let depth = depth(
                document,
                &operation.node.selection_set.node,
                &mut Vec::new(),
            );
            if depth > self.max_depth {
                return Err(LimitExceeded::Depth {
                    depth,
                    max: self.max_depth,
                });
            }
            let cost = cost(
                document,
                &operation.node.selection_set.node,
                variables,
                &mut Vec::new(),
            );
            if cost > self.max_complexity {
                return Err(LimitExceeded::Complexity {
                    cost,
                    max: self.max_complexity,
                });
            }
            costliest = costliest.max(cost);
        }
        for fragment in document.fragments.values() {
            shape.directives += fragment.node.directives.len();
            shape.add_selections(&fragment.node.selection_set.node);
        }
        if shape.aliases > self.max_aliases {
            return Err(LimitExceeded::Aliases {
                count: shape.aliases,
                max: self.max_aliases,
            });
        }
        if shape.directives > self.max_directives {
            return Err(LimitExceeded::Directives {
                count: shape.directives,
                max: self.max_directives,
            });
        }
        Ok(costliest)
    }

    /// Keeps the first `max_errors` errors of an executed request.
    pub(crate) fn cap_errors(&self, response: &mut async_graphql::Response) {
        response.errors.truncate(self.max_errors);
    }
}

/// Aliases and directives written in a document, each counted where it is
/// written (a fragment's once, however often it is spread).
#[derive(Debug, Default)]
struct Shape {
    aliases: usize,
    directives: usize,
}

impl Shape {
    fn add_selections(&mut self, set: &SelectionSet) {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    self.aliases += usize::from(field.node.alias.is_some());
                    self.directives += field.node.directives.len();
                    self.add_selections(&field.node.selection_set.node);
                }
                Selection::FragmentSpread(spread) => {
                    self.directives += spread.node.directives.len();
                }
                Selection::InlineFragment(inline) => {
                    self.directives += inline.node.directives.len();
                    self.add_selections(&inline.node.selection_set.node);
                }
            }
        }
    }
}

/// Visits each field `set` selects, fragments expanded (a fragment spread
/// twice is visited twice, as it is executed). `spreading` holds the
/// fragments being expanded on the way here, through nested fields too: a
/// fragment inside its own expansion adds nothing, since a cycle is the
/// validator's to report and must not recurse here.
fn for_each_field<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    spreading: &mut Vec<&'a str>,
    visit: &mut dyn FnMut(&'a Field, &mut Vec<&'a str>),
) {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => visit(&field.node, spreading),
            Selection::InlineFragment(inline) => {
                for_each_field(document, &inline.node.selection_set.node, spreading, visit);
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                if let Some(fragment) = document.fragments.get(name)
                    && !spreading.contains(&name)
                {
                    spreading.push(name);
                    for_each_field(
                        document,
                        &fragment.node.selection_set.node,
                        spreading,
                        visit,
                    );
                    spreading.pop();
                }
            }
        }
    }
}

/// The fields an operation selects at its root, fragments expanded.
fn root_fields(document: &ExecutableDocument, set: &SelectionSet) -> usize {
    let mut count = 0;
    for_each_field(document, set, &mut Vec::new(), &mut |_, _| count += 1);
    count
}

/// How deep `set` nests fields, fragments expanded: `{ product(id: 1) {
/// name } }` is 2, as async-graphql counts it.
fn depth<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    spreading: &mut Vec<&'a str>,
) -> usize {
    let mut deepest = 0;
    for_each_field(document, set, spreading, &mut |field, spreading| {
        deepest = deepest.max(1 + depth(document, &field.selection_set.node, spreading));
    });
    deepest
}

/// What `set` costs: one point per field, a field's selection counted
/// once per item when the field takes `first` (a list of that many),
/// fragments expanded; as async-graphql counts complexity.
fn cost<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    variables: &Variables,
    spreading: &mut Vec<&'a str>,
) -> usize {
    let mut total = 0usize;
    for_each_field(document, set, spreading, &mut |field, spreading| {
        let items = first_argument(field, variables).unwrap_or(1);
        let nested = cost(document, &field.selection_set.node, variables, spreading);
        total = total.saturating_add(1 + items.saturating_mul(nested));
    });
    total
}

/// The `first` argument of a list field, written or in a variable.
fn first_argument(field: &Field, variables: &Variables) -> Option<usize> {
    let value = field
        .get_argument("first")?
        .node
        .clone()
        .into_const_with(|name| variables.get(&name).cloned().ok_or(()))
        .ok()?;
    match value {
        Value::Number(number) => number
            .as_u64()
            .and_then(|first| usize::try_from(first).ok()),
        _ => None,
    }
}

/// The lexical tokens of a GraphQL document (names, numbers, strings,
/// punctuators; whitespace, commas and comments are not tokens), counted up
/// to `stop_after + 1`. Hand-written: async-graphql's parser has no token
/// limit, and this count must come before it runs.
fn count_tokens(text: &str, stop_after: usize) -> usize {
    let bytes = text.as_bytes();
    let mut at = 0;
    let mut tokens = 0;
    while at < bytes.len() && tokens <= stop_after {
        let byte = bytes[at];
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                at += 1;
                continue;
            }
            b'#' => {
                while at < bytes.len() && !matches!(bytes[at], b'\n' | b'\r') {
                    at += 1;
                }
                continue;
            }
            b'"' if bytes[at..].starts_with(b"\"\"\"") => {
                at += 3;
                while at < bytes.len() && !bytes[at..].starts_with(b"\"\"\"") {
                    at += if bytes[at..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                at += 3;
            }
            b'"' => {
                at += 1;
                while at < bytes.len() && !matches!(bytes[at], b'"' | b'\n' | b'\r') {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
                at += 1;
            }
            b'.' if bytes[at..].starts_with(b"...") => at += 3,
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                while at < bytes.len()
                    && matches!(bytes[at], b'_' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
                {
                    at += 1;
                }
            }
            b'-' | b'0'..=b'9' => {
                at += 1;
                while at < bytes.len()
                    && matches!(bytes[at], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    at += 1;
                }
            }
            // A punctuator, or a byte the parser will refuse: one token.
            _ => at += text[at..].chars().next().map_or(1, char::len_utf8),
        }
        tokens += 1;
    }
    tokens
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn limits() -> QueryLimits {
        QueryLimits::new(&MobileSettings::default())
    }

    fn check(query: &str) -> Result<(), LimitExceeded> {
        let limits = limits();
        limits.check_text(query)?;
        limits
            .check_document(&parse_query(query).expect("parses"), &Variables::default())
            .map(|_| ())
    }

    #[test]
    fn tokens_are_counted_as_graphql_lexes_them() {
        assert_eq!(count_tokens("{ product(id: 42) { name } }", 100), 11);
        assert_eq!(count_tokens("# a comment\n{ a, b }", 100), 4);
        assert_eq!(count_tokens(r#"{ a(s: "x \" y", t: """b""") }"#, 100), 11);
        assert_eq!(count_tokens("{ ...F @skip(if: true) }", 100), 11);
        assert_eq!(count_tokens("{ a(n: -1.5e3) }", 100), 8);
        assert_eq!(
            count_tokens("{ a { a { a } } }", 3),
            4,
            "stops past the limit"
        );
    }

    #[test]
    fn a_screens_query_passes() {
        assert_eq!(
            check(
                "query P($id: ID!) { product(id: $id) { ...Card inStock } } fragment Card on Product { name price }"
            ),
            Ok(())
        );
    }

    #[test]
    fn each_limit_refuses_with_its_code() {
        let settings = MobileSettings::default();
        let cases = [
            (
                format!(
                    "{{ product(id: 1) {{ name }} }} {}",
                    " ".repeat(settings.max_query_bytes)
                ),
                "QUERY_TOO_LARGE",
            ),
            (
                format!("{{ {} }}", "a ".repeat(settings.max_query_tokens)),
                "QUERY_TOO_MANY_TOKENS",
            ),
            (
                format!(
                    "{{ {}name{} }}",
                    "a { ".repeat(settings.max_query_depth),
                    " }".repeat(settings.max_query_depth)
                ),
                "QUERY_TOO_DEEP",
            ),
            (
                format!(
                    "{{ product(id: 1) {{ {} }} }}",
                    (0..=settings.max_aliases)
                        .map(|n| format!("n{n}: name"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                "QUERY_TOO_MANY_ALIASES",
            ),
            (
                format!(
                    "{{ {} }}",
                    "product(id: 1) { name } ".repeat(settings.max_root_fields + 1)
                ),
                "QUERY_TOO_MANY_ROOT_FIELDS",
            ),
            (
                format!(
                    "{{ product(id: 1) {{ name {} }} }}",
                    "@skip(if: false) ".repeat(settings.max_directives + 1)
                ),
                "QUERY_TOO_MANY_DIRECTIVES",
            ),
        ];
        for (query, code) in cases {
            let refused = check(&query).expect_err(code);
            assert_eq!(refused.code(), code, "{refused}");
            let response = refused.response();
            assert_eq!(response.errors.len(), 1);
            assert!(response.data == async_graphql::Value::Null);
        }
    }

    #[test]
    fn a_query_costs_a_point_per_field_and_lists_per_item() {
        let cost_of = |query: &str, variables: serde_json::Value| {
            limits()
                .check_document(
                    &parse_query(query).expect("parses"),
                    &Variables::from_json(variables),
                )
                .expect("within the limits")
        };
        let none = serde_json::json!({});
        assert_eq!(
            cost_of("{ product(id: 1) { name price } }", none.clone()),
            3
        );
        assert_eq!(
            cost_of(
                "{ product(id: 1) { ...F } } fragment F on Product { name stock }",
                none.clone()
            ),
            3
        );
        assert_eq!(cost_of("{ products(first: 10) { name price } }", none), 21);
        assert_eq!(
            cost_of(
                "query L($n: Int) { products(first: $n) { name } }",
                serde_json::json!({ "n": 5 })
            ),
            6
        );
        let too_costly = format!("{{ products(first: 100) {{ {} }} }}", "name ".repeat(10));
        assert_eq!(
            check(&too_costly).map_err(|refused| refused.code()),
            Err("QUERY_TOO_COMPLEX")
        );
    }

    #[test]
    fn fragments_count_where_they_are_spread_and_cycles_end() {
        let spread_twice = format!(
            "{{ ...F ...F }} fragment F on Query {{ {} }}",
            "product(id: 1) { name } ".repeat(limits().max_root_fields / 2 + 1)
        );
        assert_eq!(
            check(&spread_twice).map_err(|refused| refused.code()),
            Err("QUERY_TOO_MANY_ROOT_FIELDS")
        );
        let cycle = "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
        assert_eq!(check(cycle), Ok(()), "the validator reports cycles");
        let through_a_field = "{ ...A } fragment A on Query { product(id: 1) { ...A } }";
        assert_eq!(
            check(through_a_field),
            Ok(()),
            "a cycle through a field ends too"
        );
    }
}

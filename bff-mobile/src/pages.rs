//! Relay connections over the services' pages (`first`, `after`,
//! `edges { cursor node }`, `pageInfo`).
//!
//! The products and orders services page by position: their cursor is the
//! offset of the next item (`?cursor=40&limit=20`). Each edge's cursor is
//! the offset just after it, signed with the list it belongs to
//! (gateway-core's `cursor`), so a client can resume after any edge but
//! can neither alter a cursor nor use it on another list (another
//! category, order or user): such a cursor is an `INVALID_ARGUMENT`.

use async_graphql::{
    Context, OutputType,
    connection::{
        Connection, DefaultConnectionName, DefaultEdgeName, DisableNodesField, Edge, EmptyFields,
    },
};
use gateway_core::{RequestContext, cursor::CursorSigner, downstream::fetching};
use serde::de::DeserializeOwned;
use shared_schema::Page;

use crate::schema::{Services, graphql_error, invalid_argument};

/// Most items one page gives.
pub(crate) const MAX_FIRST: u32 = 50;

/// A Relay connection of `Node`s (`ProductConnection`, `ProductEdge`, …).
pub(crate) type Paged<Node> = Connection<
    String,
    Node,
    EmptyFields,
    EmptyFields,
    DefaultConnectionName,
    DefaultEdgeName,
    DisableNodesField,
>;

/// Which service list a connection pages through.
pub(crate) struct ListSource {
    /// The service serving it.
    pub(crate) service: &'static str,
    /// Its path and query, without the page's `limit` and `cursor`.
    pub(crate) path: String,
    /// What its cursors are bound to (`products audio price_asc`).
    pub(crate) list: String,
    /// What a 404 of the service means is missing, and its id.
    pub(crate) owner: (&'static str, String),
}

/// The page of `source` a query asks for (`first` after `after`), as a
/// connection of `Node`s.
pub(crate) async fn connection<Item, Node>(
    ctx: &Context<'_>,
    source: ListSource,
    first: i32,
    after: Option<&str>,
) -> async_graphql::Result<Paged<Node>>
where
    Item: DeserializeOwned,
    Node: OutputType + From<Item>,
{
    let services = ctx.data::<Services>()?;
    let context = ctx.data::<RequestContext>()?;
    let page = PageRequest::new(&services.cursors, &source.list, first, after)?;
    let (resource, id) = source.owner;
    let found: Page<Item> = services
        .downstreams
        .client(source.service)
        .get(format!("{}&{}", source.path, page.query()), context)
        .await
        .map_err(|error| graphql_error(fetching(resource, id)(error)))?;
    let has_next = found.next_cursor.is_some();
    Ok(page.connection(
        &services.cursors,
        &source.list,
        found.items.into_iter().map(Node::from),
        has_next,
    ))
}

/// Which page of a list a query asks for, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageRequest {
    /// Position of the page's first item.
    offset: u64,
    /// Items on the page.
    limit: u32,
}

impl PageRequest {
    /// `first` items after the cursor `after` of `list`.
    pub(crate) fn new(
        cursors: &CursorSigner,
        list: &str,
        first: i32,
        after: Option<&str>,
    ) -> async_graphql::Result<Self> {
        let limit = u32::try_from(first)
            .ok()
            .filter(|first| (1..=MAX_FIRST).contains(first))
            .ok_or_else(|| invalid_argument("first", format!("must be 1 to {MAX_FIRST}")))?;
        let offset = match after {
            None => 0,
            Some(after) => cursors
                .open(list, after)
                .and_then(|offset| offset.parse().ok())
                .ok_or_else(|| {
                    invalid_argument(
                        "after",
                        "is not a cursor of this list (it was altered, or belongs to another list)"
                            .to_owned(),
                    )
                })?,
        };
        Ok(Self { offset, limit })
    }

    /// The service's query parameters of the page.
    pub(crate) fn query(&self) -> String {
        format!("limit={}&cursor={}", self.limit, self.offset)
    }

    /// The page's connection: `nodes` with their cursors.
    pub(crate) fn connection<Node: OutputType>(
        &self,
        cursors: &CursorSigner,
        list: &str,
        nodes: impl IntoIterator<Item = Node>,
        has_next_page: bool,
    ) -> Paged<Node> {
        let mut connection = Paged::new(self.offset > 0, has_next_page);
        connection.edges.extend(
            nodes
                .into_iter()
                .zip(self.offset + 1..)
                .map(|(node, after)| Edge::new(cursors.sign(list, &after.to_string()), node)),
        );
        connection
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_resumes_after_its_cursor_on_its_own_list_only() {
        let cursors = CursorSigner::new(Some("a secret of at least 32 characters"), "secret");
        let first = PageRequest::new(&cursors, "products audio newest", 2, None).expect("valid");
        assert_eq!(first.query(), "limit=2&cursor=0");
        let page = first.connection(&cursors, "products audio newest", ["a", "b"], true);
        let after_b = page.edges[1].cursor.clone();
        let next =
            PageRequest::new(&cursors, "products audio newest", 2, Some(&after_b)).expect("valid");
        assert_eq!(next.query(), "limit=2&cursor=2");
        for (list, first, after) in [
            ("products audio rating", 2, Some(after_b.as_str())),
            ("products audio newest", 2, Some("garbage")),
            ("products audio newest", 0, None),
            ("products audio newest", 51, None),
            ("products audio newest", -1, None),
        ] {
            assert!(
                PageRequest::new(&cursors, list, first, after).is_err(),
                "{list} {first} {after:?}"
            );
        }
    }
}

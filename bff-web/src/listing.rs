//! `GET /api/categories/{slug}/products?sort=&limit=&cursor=`: a category's
//! listing page.
//!
//! Two rounds: the page of products (required: an unknown category is a
//! 404) and the category's facets (optional), in parallel; then the prices
//! and stock of the page's products, one batch call per service. The
//! products service pages the listing; its cursor reaches the client
//! signed ([`crate::cursor`]), so a cursor that was altered or belongs to
//! another listing is a 400 naming the `cursor` parameter, as a bad `sort`
//! or `limit` names theirs.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Path, Query, State},
};
use gateway_core::{
    Error, RequestContext,
    cursor::CursorSigner,
    downstream::{
        Downstreams,
        aggregate::{aggregate, optional, required},
        fetching,
    },
};
use serde::{Deserialize, Serialize};
use shared_schema::{
    Page,
    catalog::{CategoryFacets, PRODUCTS, ProductSort},
};

use crate::views::{self, ListedProduct, ProductCard, ProductOffer};

/// Products on a page unless `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 24;
/// Most products on a page.
const MAX_LIMIT: u32 = 100;

/// What the listing is assembled from.
#[derive(Debug, Clone)]
pub(crate) struct ListingSources {
    /// The downstream clients.
    pub(crate) services: Downstreams,
    /// Signs and opens the listing's cursors.
    pub(crate) cursors: CursorSigner,
}

/// A category's listing page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListingPage {
    /// The category's slug.
    pub category: String,
    /// The order of the listing.
    pub sort: ProductSort,
    /// The products of this page, each with its price and availability.
    pub items: Vec<ProductOffer>,
    /// What the whole category holds, for the page's filters; `null` when
    /// it could not be fetched.
    pub facets: Option<Facets>,
    /// Where the next page is.
    pub page_info: PageInfo,
    /// Parts that could not be fetched (`facets`, `price`,
    /// `availability`), with their causes, as in `BFF-Partial`.
    pub missing: BTreeMap<String, String>,
}

/// The facets of a category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Facets {
    /// Products in the category.
    pub total: u32,
    /// Of them, those that can be ordered now.
    pub in_stock: u32,
    /// Each brand with its number of products, most first.
    pub brands: Vec<BrandFacet>,
    /// Price bands, cheapest first.
    pub price_bands: Vec<PriceBandFacet>,
}

/// A brand and how many products of the category it makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrandFacet {
    /// Brand name.
    pub brand: String,
    /// Its products in the category.
    pub count: u32,
}

/// Products priced from `minMinor` up to, not including, `maxMinor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceBandFacet {
    /// Lowest price of the band, minor units.
    pub min_minor: i64,
    /// Price the band stops below, minor units; `null` for the last band.
    pub max_minor: Option<i64>,
    /// Products in the band.
    pub count: u32,
}

/// Where a listing continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    /// Products per page.
    pub limit: u32,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

impl From<CategoryFacets> for Facets {
    fn from(facets: CategoryFacets) -> Self {
        Self {
            total: facets.total,
            in_stock: facets.in_stock,
            brands: facets
                .brands
                .into_iter()
                .map(|brand| BrandFacet {
                    brand: brand.brand,
                    count: brand.count,
                })
                .collect(),
            price_bands: facets
                .price_bands
                .into_iter()
                .map(|band| PriceBandFacet {
                    min_minor: band.min_minor,
                    max_minor: band.max_minor,
                    count: band.count,
                })
                .collect(),
        }
    }
}

/// The listing's query, checked: each bad parameter is a 400 naming it.
#[derive(Debug, PartialEq)]
struct ListingQuery {
    sort: ProductSort,
    limit: u32,
    /// The service's cursor, opened.
    cursor: Option<String>,
}

impl ListingQuery {
    fn parse(
        pairs: &[(String, String)],
        slug: &str,
        cursors: &CursorSigner,
    ) -> Result<Self, Error> {
        let one = |name: &str| -> Result<Option<&str>, Error> {
            let mut values = pairs.iter().filter(|(key, _)| key == name);
            match (values.next(), values.next()) {
                (None, _) => Ok(None),
                (Some((_, value)), None) => Ok(Some(value.as_str())),
                (Some(_), Some(_)) => {
                    Err(Error::invalid_parameter(name, "is given more than once"))
                }
            }
        };
        let sort = match one("sort")? {
            None => ProductSort::default(),
            Some(sort) => ProductSort::named(sort).ok_or_else(|| {
                let names: Vec<&str> = ProductSort::ALL.iter().map(|sort| sort.as_str()).collect();
                Error::invalid_parameter("sort", format!("must be one of {}", names.join(", ")))
            })?,
        };
        let limit = match one("limit")? {
            None => DEFAULT_LIMIT,
            Some(limit) => limit
                .parse::<u32>()
                .ok()
                .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                .ok_or_else(|| {
                    Error::invalid_parameter(
                        "limit",
                        format!("must be a whole number from 1 to {MAX_LIMIT}"),
                    )
                })?,
        };
        let cursor = one("cursor")?
            .map(|cursor| {
                cursors.open(&listing_of(slug, sort), cursor).ok_or_else(|| {
                    Error::invalid_parameter(
                        "cursor",
                        "is not a cursor this listing issued (it was altered, or belongs to another category or order)",
                    )
                })
            })
            .transpose()?;
        Ok(Self {
            sort,
            limit,
            cursor,
        })
    }
}

/// What a cursor is bound to: the category and the order.
fn listing_of(slug: &str, sort: ProductSort) -> String {
    format!("{slug} {}", sort.as_str())
}

pub(crate) async fn get_listing(
    State(ListingSources { services, cursors }): State<ListingSources>,
    context: RequestContext,
    Path(slug): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<ListingPage>, Error> {
    let query = ListingQuery::parse(&pairs, &slug, &cursors)?;
    // The slug goes into the service's query: one made of letters and
    // dashes cannot smuggle a parameter in; any other names no category.
    if slug.is_empty()
        || !slug
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
    {
        return Err(Error::NotFound {
            resource: "category",
            id: slug,
        });
    }
    let mut listing_path = format!(
        "/products?category={slug}&sort={}&limit={}",
        query.sort.as_str(),
        query.limit
    );
    if let Some(cursor) = &query.cursor {
        listing_path.push_str("&cursor=");
        listing_path.push_str(
            &percent_encoding::utf8_percent_encode(cursor, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        );
    }
    let (page, facets) = aggregate((
        required(async {
            services
                .client(PRODUCTS.name)
                .get::<Page<ListedProduct>>(listing_path, &context)
                .await
                .map_err(fetching("category", &slug))
        }),
        optional(
            "facets",
            &context,
            services
                .client(PRODUCTS.name)
                .get::<CategoryFacets>(format!("/categories/{slug}/facets"), &context),
        ),
    ))
    .await?;
    let cards: Vec<ProductCard> = page.items.into_iter().map(ProductCard::from).collect();
    let ids: Vec<u64> = cards.iter().map(|card| card.id).collect();
    let offers = views::offers(&services, &ids, &context).await?;
    Ok(Json(ListingPage {
        items: cards.into_iter().map(|card| offers.offer(card)).collect(),
        facets: facets.map(Facets::from),
        page_info: PageInfo {
            limit: query.limit,
            next_cursor: page
                .next_cursor
                .map(|next| cursors.sign(&listing_of(&slug, query.sort), &next)),
        },
        category: slug,
        sort: query.sort,
        missing: views::missing(&context),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn parameter_of(error: Error) -> String {
        error.problem().errors[0].name.clone()
    }

    #[test]
    fn defaults_and_each_bad_parameter_named() {
        let cursors = CursorSigner::new(Some("secret"), "cursor_secret");
        assert_eq!(
            ListingQuery::parse(&[], "audio", &cursors).expect("defaults"),
            ListingQuery {
                sort: ProductSort::Relevance,
                limit: 24,
                cursor: None
            }
        );
        let cursor = cursors.sign(&listing_of("audio", ProductSort::Newest), "48");
        assert_eq!(
            ListingQuery::parse(
                &pairs(&[("sort", "newest"), ("limit", "100"), ("cursor", &cursor)]),
                "audio",
                &cursors
            )
            .expect("valid"),
            ListingQuery {
                sort: ProductSort::Newest,
                limit: 100,
                cursor: Some("48".to_owned())
            }
        );
        for (query, parameter) in [
            (vec![("sort", "cheapest")], "sort"),
            (vec![("limit", "0")], "limit"),
            (vec![("limit", "101")], "limit"),
            (vec![("limit", "ten")], "limit"),
            (vec![("limit", "5"), ("limit", "6")], "limit"),
            (vec![("cursor", "garbage")], "cursor"),
            (
                vec![("sort", "price_asc"), ("cursor", cursor.as_str())],
                "cursor",
            ),
        ] {
            let error = ListingQuery::parse(&pairs(&query), "audio", &cursors)
                .expect_err("a bad parameter");
            assert_eq!(error.status(), 400, "{query:?}");
            assert_eq!(error.code(), "INVALID_PARAMETER");
            assert_eq!(parameter_of(error), parameter, "{query:?}");
        }
        assert!(
            ListingQuery::parse(&pairs(&[("cursor", &cursor)]), "kitchen", &cursors).is_err(),
            "another category's cursor"
        );
    }
}

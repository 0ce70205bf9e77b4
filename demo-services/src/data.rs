//! Deterministic demo data.
//!
//! Everything is computed from `(seed, kind, id)` with a stateless hash, so
//! the same seed gives the same catalog on every run and in every process,
//! and nothing has to be generated up front or held in memory: product 9,999
//! costs no more to serve than product 1. Only orders placed through
//! `POST /orders` are stored.

use std::{
    collections::BTreeMap,
    num::NonZeroU64,
    sync::{
        OnceLock, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use serde::{Deserialize, Serialize};
use shared_schema::{
    accounts::{NewOrder, Order, OrderLine, OrderStatus, User},
    catalog::{
        BrandCount, CategoryFacets, Price, PriceBand, Product, ProductReviews, ProductSort, Review,
        StockLevel,
    },
};

/// Size and seed of the generated data (`[data]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Seed of every generated value (default 42).
    pub seed: u64,
    /// Number of products, ids `1..=products` (default 10000).
    pub products: NonZeroU64,
    /// Number of users, ids `1..=users` (default 1000).
    pub users: NonZeroU64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            products: NonZeroU64::new(10_000).expect("non-zero"),
            users: NonZeroU64::new(1_000).expect("non-zero"),
        }
    }
}

/// The tenants users and partners belong to.
pub const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

const ADJECTIVES: [&str; 16] = [
    "Classic",
    "Compact",
    "Deluxe",
    "Eco",
    "Ergonomic",
    "Heavy-Duty",
    "Lightweight",
    "Modern",
    "Portable",
    "Premium",
    "Rugged",
    "Sleek",
    "Smart",
    "Vintage",
    "Wireless",
    "Handcrafted",
];
const NOUNS: [&str; 16] = [
    "Backpack",
    "Blender",
    "Chair",
    "Desk Lamp",
    "Headphones",
    "Kettle",
    "Keyboard",
    "Mug",
    "Notebook",
    "Pan",
    "Speaker",
    "Teapot",
    "Tent",
    "Umbrella",
    "Watch",
    "Water Bottle",
];
/// The category slugs.
pub const CATEGORIES: [&str; 8] = [
    "kitchen", "office", "outdoor", "audio", "home", "travel", "sports", "garden",
];
/// Where the price bands of a category's facets start, minor units: under
/// 25, 25 to 50, 50 to 100, 100 to 250, 250 and more.
const PRICE_BANDS: [i64; 5] = [0, 2_500, 5_000, 10_000, 25_000];
const RECOMMENDATION_REASONS: [&str; 4] = [
    "Popular with customers like you",
    "Bought together with your last order",
    "New in a category you shop",
    "Highly rated",
];
/// Most recommendations one call returns.
pub const MAX_RECOMMENDATIONS: u64 = 50;
const BRANDS: [&str; 8] = [
    "Acorn",
    "Borealis",
    "Cobalt",
    "Driftwood",
    "Ember",
    "Fjord",
    "Granite",
    "Harbor",
];
const WAREHOUSES: [&str; 4] = ["AMS-1", "FRA-2", "LHR-1", "MAD-3"];
const FIRST_NAMES: [&str; 8] = [
    "Ada", "Bruno", "Chen", "Dana", "Emeka", "Freya", "Goran", "Hana",
];
const LAST_NAMES: [&str; 8] = [
    "Ali", "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Horvat",
];
const REVIEW_TITLES: [&str; 5] = [
    "Disappointing",
    "Not great",
    "Does the job",
    "Very good",
    "Excellent",
];
const TIERS: [&str; 3] = ["standard", "silver", "gold"];

/// Most reviews a product has.
const MAX_REVIEWS: u64 = 40;
/// Most orders a generated user has.
const MAX_ORDERS_PER_USER: u64 = 5;
/// Ids of stored orders start here, above every generated order id.
const FIRST_PLACED_ORDER_ID: u64 = 1_000_000_000;
/// A fixed epoch for generated timestamps (2025-01-01T00:00:00Z).
const EPOCH: u64 = 1_735_689_600;

/// Domain-separates the hashes of different kinds of value.
#[derive(Clone, Copy)]
enum Kind {
    Product = 1,
    Stock,
    Price,
    Review,
    User,
    Order,
    Recommendation,
    Relevance,
}

/// SplitMix64 over `(seed, kind, id, salt)`: cheap, stateless and well mixed.
fn hash(seed: u64, kind: Kind, id: u64, salt: u64) -> u64 {
    let mut z = seed
        .wrapping_add((kind as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(id.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(salt.wrapping_mul(0x94D0_49BB_1331_11EB));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<T: Copy>(items: &[T], value: u64) -> T {
    items[(value % items.len() as u64) as usize]
}

/// Why an order cannot be placed.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The user does not exist.
    #[error("user {0} does not exist")]
    UnknownUser(u64),
    /// A line names a product that does not exist.
    #[error("product {0} does not exist")]
    UnknownProduct(u64),
    /// The order has no lines or a line has no quantity.
    #[error("an order needs at least one line, each with a quantity of 1 to 1000")]
    Empty,
    /// The user belongs to another tenant than the caller.
    #[error("user {0} belongs to another tenant")]
    WrongTenant(u64),
    /// An order without a user came without the caller's tenant.
    #[error("an order without a user needs the caller's tenant")]
    NoTenant,
}

/// Newest first; ties: the higher id first.
fn newest_first(orders: &mut [Order]) {
    orders.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
}

/// One recommended product, from the recommendations service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The product recommended.
    pub product_id: u64,
    /// Why, in words the page can show.
    pub reason: String,
}

/// A user's recommendations (`GET /recommendations?user=&limit=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendations {
    /// The user they are for.
    pub user_id: u64,
    /// Best first.
    pub items: Vec<Recommendation>,
}

/// The products of one category in every listing order, and its facets:
/// built once, on the first listing, since ordering needs every product.
#[derive(Debug)]
struct CategoryIndex {
    orders: BTreeMap<ProductSort, Vec<u64>>,
    facets: CategoryFacets,
}

/// The demo data set.
#[derive(Debug)]
pub struct Catalog {
    config: DataConfig,
    placed: RwLock<BTreeMap<u64, Order>>,
    next_order_id: AtomicU64,
    /// By category slug; see [`CategoryIndex`].
    categories: OnceLock<BTreeMap<&'static str, CategoryIndex>>,
}

impl Catalog {
    /// The data set described by `config`.
    pub fn new(config: DataConfig) -> Self {
        Self {
            config,
            placed: RwLock::new(BTreeMap::new()),
            next_order_id: AtomicU64::new(FIRST_PLACED_ORDER_ID),
            categories: OnceLock::new(),
        }
    }

    fn h(&self, kind: Kind, id: u64, salt: u64) -> u64 {
        hash(self.config.seed, kind, id, salt)
    }

    /// Number of products.
    pub fn product_count(&self) -> u64 {
        self.config.products.get()
    }

    /// Product `id`, if it exists.
    pub fn product(&self, id: u64) -> Option<Product> {
        if id == 0 || id > self.config.products.get() {
            return None;
        }
        let h = |salt| self.h(Kind::Product, id, salt);
        let name = format!("{} {}", pick(&ADJECTIVES, h(1)), pick(&NOUNS, h(2)));
        Some(Product {
            id,
            sku: format!("SKU-{:06}-{:02}", id, h(3) % 100),
            description: format!(
                "The {} is a {} favourite, made to last and backed by a two-year warranty.",
                name.to_lowercase(),
                pick(&CATEGORIES, h(4))
            ),
            name,
            category: pick(&CATEGORIES, h(4)).to_owned(),
            brand: pick(&BRANDS, h(5)).to_owned(),
            image_url: format!("https://img.demo.bff/products/{id}.jpg"),
            created_at: EPOCH + h(6) % (300 * 86_400),
            updated_at: EPOCH + h(6) % (300 * 86_400) + h(7) % (60 * 86_400),
        })
    }

    /// Stock of product `id`.
    pub fn stock(&self, id: u64) -> Option<StockLevel> {
        self.product_exists(id).then(|| {
            let h = |salt| self.h(Kind::Stock, id, salt);
            StockLevel {
                product_id: id,
                available: (h(1) % 500) as u32,
                reserved: (h(2) % 20) as u32,
                warehouse: pick(&WAREHOUSES, h(3)).to_owned(),
            }
        })
    }

    /// Price of product `id`.
    pub fn price(&self, id: u64) -> Option<Price> {
        self.product_exists(id).then(|| {
            let h = |salt| self.h(Kind::Price, id, salt);
            let list_amount_minor = 499 + (h(1) % 49_500) as i64;
            let discount_percent = [0, 0, 0, 10, 15, 25][(h(2) % 6) as usize];
            Price {
                product_id: id,
                currency: "EUR".to_owned(),
                amount_minor: list_amount_minor * (100 - discount_percent) / 100,
                list_amount_minor,
                discount_percent: discount_percent as u8,
            }
        })
    }

    fn product_exists(&self, id: u64) -> bool {
        id != 0 && id <= self.config.products.get()
    }

    fn review_count(&self, product_id: u64) -> u64 {
        self.h(Kind::Review, product_id, 0) % (MAX_REVIEWS + 1)
    }

    /// The stars of review `index` of product `product_id`, without the rest of it.
    fn review_rating(&self, product_id: u64, index: u64) -> u8 {
        1 + (self.h(Kind::Review, product_id * (MAX_REVIEWS + 1) + index, 1) % 5) as u8
    }

    fn review(&self, product_id: u64, index: u64) -> Review {
        let h = |salt| self.h(Kind::Review, product_id * (MAX_REVIEWS + 1) + index, salt);
        let rating = self.review_rating(product_id, index);
        Review {
            id: product_id * 100 + index + 1,
            product_id,
            user_id: 1 + h(2) % self.config.users.get(),
            rating,
            title: REVIEW_TITLES[usize::from(rating - 1)].to_owned(),
            body: format!(
                "Review {} of product {product_id}: {} stars.",
                index + 1,
                rating
            ),
            created_at: EPOCH + h(3) % (300 * 86_400),
        }
    }

    /// Reviews of product `id`: the summary and `limit` reviews from `offset`.
    pub fn reviews(&self, product_id: u64, offset: u64, limit: u64) -> Option<ProductReviews> {
        if !self.product_exists(product_id) {
            return None;
        }
        let total = self.review_count(product_id);
        let histogram = self.rating_histogram(product_id);
        let end = total.min(offset.saturating_add(limit));
        Some(ProductReviews {
            product_id,
            total: total as u32,
            average_rating: average_rating(&histogram),
            histogram,
            items: (offset..end)
                .map(|index| self.review(product_id, index))
                .collect(),
            next_cursor: (end < total).then(|| end.to_string()),
        })
    }

    /// How many of product `id`'s reviews gave 1 to 5 stars.
    fn rating_histogram(&self, product_id: u64) -> [u32; 5] {
        let mut histogram = [0; 5];
        for index in 0..self.review_count(product_id) {
            histogram[usize::from(self.review_rating(product_id, index) - 1)] += 1;
        }
        histogram
    }

    fn category_index(&self) -> &BTreeMap<&'static str, CategoryIndex> {
        self.categories.get_or_init(|| {
            let mut members: BTreeMap<&'static str, Vec<Product>> = BTreeMap::new();
            for id in 1..=self.product_count() {
                if let Some(product) = self.product(id) {
                    let slug = CATEGORIES
                        .into_iter()
                        .find(|slug| *slug == product.category)
                        .expect("products are in a known category");
                    members.entry(slug).or_default().push(product);
                }
            }
            members
                .into_iter()
                .map(|(slug, products)| (slug, self.index_category(slug, &products)))
                .collect()
        })
    }

    fn index_category(&self, slug: &str, products: &[Product]) -> CategoryIndex {
        /// What a listing is ordered by, computed once per product.
        struct Keys {
            id: u64,
            relevance: u64,
            price: i64,
            rating: f32,
            created_at: u64,
        }
        let keys: Vec<Keys> = products
            .iter()
            .map(|product| Keys {
                id: product.id,
                relevance: self.h(Kind::Relevance, product.id, 0),
                price: self.price(product.id).map_or(0, |price| price.amount_minor),
                rating: average_rating(&self.rating_histogram(product.id)),
                created_at: product.created_at,
            })
            .collect();
        let sorted = |order: &dyn Fn(&Keys, &Keys) -> std::cmp::Ordering| {
            let mut keys: Vec<&Keys> = keys.iter().collect();
            // Ties in id order, so every order is total and stable.
            keys.sort_by(|a, b| order(a, b).then(a.id.cmp(&b.id)));
            keys.into_iter().map(|keys| keys.id).collect()
        };
        let orders = BTreeMap::from([
            (
                ProductSort::Relevance,
                sorted(&|a, b| b.relevance.cmp(&a.relevance)),
            ),
            (ProductSort::PriceAsc, sorted(&|a, b| a.price.cmp(&b.price))),
            (
                ProductSort::PriceDesc,
                sorted(&|a, b| b.price.cmp(&a.price)),
            ),
            (
                ProductSort::Rating,
                sorted(&|a, b| b.rating.total_cmp(&a.rating)),
            ),
            (
                ProductSort::Newest,
                sorted(&|a, b| b.created_at.cmp(&a.created_at)),
            ),
        ]);
        let mut brands: BTreeMap<&str, u32> = BTreeMap::new();
        for product in products {
            *brands.entry(&product.brand).or_default() += 1;
        }
        let mut brands: Vec<BrandCount> = brands
            .into_iter()
            .map(|(brand, count)| BrandCount {
                brand: brand.to_owned(),
                count,
            })
            .collect();
        brands.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.brand.cmp(&b.brand)));
        let price_bands = PRICE_BANDS
            .iter()
            .enumerate()
            .map(|(index, &min_minor)| {
                let max_minor = PRICE_BANDS.get(index + 1).copied();
                PriceBand {
                    min_minor,
                    max_minor,
                    count: keys
                        .iter()
                        .filter(|keys| {
                            keys.price >= min_minor && max_minor.is_none_or(|max| keys.price < max)
                        })
                        .count() as u32,
                }
            })
            .collect();
        CategoryIndex {
            orders,
            facets: CategoryFacets {
                category: slug.to_owned(),
                total: keys.len() as u32,
                brands,
                price_bands,
                in_stock: keys
                    .iter()
                    .filter(|keys| self.stock(keys.id).is_some_and(|stock| stock.available > 0))
                    .count() as u32,
            },
        }
    }

    /// `limit` products of category `slug` in `sort` order from `offset`,
    /// and the offset of the next page; `None` for an unknown category.
    pub fn category_page(
        &self,
        slug: &str,
        sort: ProductSort,
        offset: u64,
        limit: u64,
    ) -> Option<(Vec<Product>, Option<u64>)> {
        let ids = &self.category_index().get(slug)?.orders[&sort];
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(ids.len());
        let end = start
            .saturating_add(usize::try_from(limit).unwrap_or(usize::MAX))
            .min(ids.len());
        let products = ids[start..end]
            .iter()
            .filter_map(|id| self.product(*id))
            .collect();
        Some((products, (end < ids.len()).then_some(end as u64)))
    }

    /// Up to `limit` products in id order after product `after`, of
    /// category `slug` when given and changed at or after `updated_since`
    /// when given, with the id to continue after when more may follow;
    /// `None` when the category does not exist. The feed a partner syncs
    /// from: new products only ever join at its end.
    pub fn products_after(
        &self,
        after: u64,
        slug: Option<&str>,
        updated_since: Option<u64>,
        limit: u64,
    ) -> Option<(Vec<Product>, Option<u64>)> {
        if let Some(slug) = slug {
            self.category_index().get(slug)?;
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut found = Vec::new();
        let mut last = after;
        for id in after.saturating_add(1)..=self.product_count() {
            if found.len() == limit {
                return Some((found, Some(last)));
            }
            last = id;
            let Some(product) = self.product(id) else {
                continue;
            };
            if slug.is_none_or(|slug| product.category == slug)
                && updated_since.is_none_or(|since| product.updated_at >= since)
            {
                found.push(product);
            }
        }
        Some((found, None))
    }

    /// The facets of category `slug`, if it exists.
    pub fn category_facets(&self, slug: &str) -> Option<CategoryFacets> {
        Some(self.category_index().get(slug)?.facets.clone())
    }

    /// Up to `limit` products of product `id`'s category, `id` excluded: the
    /// category's ranking from just after `id`, so neighbours differ.
    pub fn related(&self, id: u64, limit: u64) -> Option<Vec<Product>> {
        let product = self.product(id)?;
        let ids =
            &self.category_index().get(product.category.as_str())?.orders[&ProductSort::Relevance];
        let at = ids.iter().position(|other| *other == id)?;
        Some(
            ids[at + 1..]
                .iter()
                .chain(&ids[..at])
                .take(usize::try_from(limit).unwrap_or(usize::MAX))
                .filter_map(|id| self.product(*id))
                .collect(),
        )
    }

    /// Up to `limit` (at most [`MAX_RECOMMENDATIONS`]) products for user
    /// `user_id`, distinct, best first.
    pub fn recommendations(&self, user_id: u64, limit: u64) -> Option<Recommendations> {
        self.user(user_id)?;
        let wanted = limit.min(MAX_RECOMMENDATIONS).min(self.product_count());
        let mut items: Vec<Recommendation> = Vec::new();
        let mut salt = 0;
        while (items.len() as u64) < wanted {
            let h = self.h(Kind::Recommendation, user_id, salt);
            salt += 1;
            let product_id = 1 + h % self.product_count();
            if items.iter().any(|item| item.product_id == product_id) {
                continue;
            }
            items.push(Recommendation {
                product_id,
                reason: pick(&RECOMMENDATION_REASONS, h >> 32).to_owned(),
            });
        }
        Some(Recommendations { user_id, items })
    }

    /// User `id`, if it exists.
    pub fn user(&self, id: u64) -> Option<User> {
        if id == 0 || id > self.config.users.get() {
            return None;
        }
        let h = |salt| self.h(Kind::User, id, salt);
        let first = pick(&FIRST_NAMES, h(1));
        let last = pick(&LAST_NAMES, h(2));
        Some(User {
            id,
            tenant: pick(&TENANTS, h(3)).to_owned(),
            name: format!("{first} {last}"),
            email: format!(
                "{}.{}{id}@example.com",
                first.to_lowercase(),
                last.to_lowercase()
            ),
            tier: pick(&TIERS, h(4)).to_owned(),
        })
    }

    fn generated_order(&self, user: &User, index: u64) -> Order {
        let id = user.id * 100 + index + 1;
        let h = |salt| self.h(Kind::Order, id, salt);
        let lines: Vec<OrderLine> = (0..1 + h(1) % 3)
            .map(|line| {
                let product_id = 1 + h(10 + line) % self.config.products.get();
                OrderLine {
                    product_id,
                    quantity: 1 + (h(20 + line) % 3) as u32,
                    unit_price_minor: self.price(product_id).map_or(0, |price| price.amount_minor),
                }
            })
            .collect();
        Order {
            id,
            tenant: user.tenant.clone(),
            user_id: Some(user.id),
            status: pick(
                &[
                    OrderStatus::Pending,
                    OrderStatus::Paid,
                    OrderStatus::Shipped,
                    OrderStatus::Delivered,
                    OrderStatus::Cancelled,
                ],
                h(2),
            ),
            total_minor: lines
                .iter()
                .map(|line| line.unit_price_minor * i64::from(line.quantity))
                .sum(),
            lines,
            currency: "EUR".to_owned(),
            created_at: EPOCH + h(3) % (300 * 86_400),
        }
    }

    /// Order `id`, generated or placed.
    pub fn order(&self, id: u64) -> Option<Order> {
        if id >= FIRST_PLACED_ORDER_ID {
            return self
                .placed
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&id)
                .cloned();
        }
        let (user_id, index) = (id / 100, (id % 100).checked_sub(1)?);
        let user = self.user(user_id)?;
        (index < self.h(Kind::Order, user_id, 0) % (MAX_ORDERS_PER_USER + 1))
            .then(|| self.generated_order(&user, index))
    }

    /// Every order of user `user_id`, newest first (ties: higher id first).
    pub fn orders_of(&self, user_id: u64) -> Vec<Order> {
        let Some(user) = self.user(user_id) else {
            return Vec::new();
        };
        let generated = self.h(Kind::Order, user_id, 0) % (MAX_ORDERS_PER_USER + 1);
        let mut orders: Vec<Order> = (0..generated)
            .map(|index| self.generated_order(&user, index))
            .collect();
        orders.extend(self.placed_where(|order| order.user_id == Some(user_id)));
        newest_first(&mut orders);
        orders
    }

    /// Every order of `tenant`, its users' and its partners', newest first.
    pub fn orders_of_tenant(&self, tenant: &str) -> Vec<Order> {
        let mut orders: Vec<Order> = (1..=self.config.users.get())
            .filter_map(|id| self.user(id))
            .filter(|user| user.tenant == tenant)
            .flat_map(|user| {
                let generated = self.h(Kind::Order, user.id, 0) % (MAX_ORDERS_PER_USER + 1);
                (0..generated).map(move |index| (user.clone(), index))
            })
            .map(|(user, index)| self.generated_order(&user, index))
            .collect();
        orders.extend(self.placed_where(|order| order.tenant == tenant));
        newest_first(&mut orders);
        orders
    }

    /// The placed orders that `wanted` selects.
    fn placed_where(&self, wanted: impl Fn(&Order) -> bool) -> Vec<Order> {
        self.placed
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|order| wanted(order))
            .cloned()
            .collect()
    }

    /// Places an order for `tenant` (the caller's verified tenant, when
    /// known): a user's, or without a user a partner system's for `tenant`.
    pub fn place_order(
        &self,
        new: &NewOrder,
        tenant: Option<&str>,
        now: u64,
    ) -> Result<Order, OrderError> {
        let tenant = match new.user_id {
            Some(user_id) => {
                let user = self.user(user_id).ok_or(OrderError::UnknownUser(user_id))?;
                if tenant.is_some_and(|tenant| tenant != user.tenant) {
                    return Err(OrderError::WrongTenant(user_id));
                }
                user.tenant
            }
            None => tenant.ok_or(OrderError::NoTenant)?.to_owned(),
        };
        if new.lines.is_empty()
            || new
                .lines
                .iter()
                .any(|line| line.quantity == 0 || line.quantity > 1000)
        {
            return Err(OrderError::Empty);
        }
        let mut lines = Vec::with_capacity(new.lines.len());
        for line in &new.lines {
            let price = self
                .price(line.product_id)
                .ok_or(OrderError::UnknownProduct(line.product_id))?;
            lines.push(OrderLine {
                product_id: line.product_id,
                quantity: line.quantity,
                unit_price_minor: price.amount_minor,
            });
        }
        let order = Order {
            id: self.next_order_id.fetch_add(1, Ordering::Relaxed),
            tenant,
            user_id: new.user_id,
            status: OrderStatus::Pending,
            total_minor: lines
                .iter()
                .map(|line| line.unit_price_minor * i64::from(line.quantity))
                .sum(),
            lines,
            currency: "EUR".to_owned(),
            created_at: now,
        };
        self.placed
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(order.id, order.clone());
        Ok(order)
    }
}

/// The mean of a rating histogram, 0 without ratings.
fn average_rating(histogram: &[u32; 5]) -> f32 {
    let count: u32 = histogram.iter().sum();
    if count == 0 {
        return 0.0;
    }
    let stars: u32 = histogram
        .iter()
        .zip(1..)
        .map(|(count, stars)| count * stars)
        .sum();
    stars as f32 / count as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_schema::accounts::NewOrderLine;

    fn catalog() -> Catalog {
        Catalog::new(DataConfig::default())
    }

    #[test]
    fn the_same_seed_gives_the_same_data() {
        let (a, b) = (catalog(), catalog());
        for id in [1, 17, 9_999, 10_000] {
            assert_eq!(a.product(id), b.product(id));
            assert_eq!(a.price(id), b.price(id));
            assert_eq!(a.reviews(id, 0, 10), b.reviews(id, 0, 10));
        }
        let other = Catalog::new(DataConfig {
            seed: 7,
            ..DataConfig::default()
        });
        assert_ne!(a.product(1), other.product(1));
    }

    #[test]
    fn ids_outside_the_data_set_do_not_exist() {
        let catalog = catalog();
        assert!(catalog.product(0).is_none());
        assert!(catalog.product(10_001).is_none());
        assert!(catalog.price(10_001).is_none());
        assert!(catalog.user(1_001).is_none());
        assert!(catalog.product(10_000).is_some());
    }

    #[test]
    fn prices_are_discounts_of_the_list_price() {
        let catalog = catalog();
        for id in 1..=500 {
            let price = catalog.price(id).expect("exists");
            assert!(price.amount_minor <= price.list_amount_minor && price.amount_minor > 0);
        }
    }

    #[test]
    fn review_pages_cover_every_review_once() {
        let catalog = catalog();
        let product = (1..100)
            .find(|&id| catalog.review_count(id) > 12)
            .expect("some product has many reviews");
        let first = catalog.reviews(product, 0, 5).expect("exists");
        let mut seen = first.items.len() as u32;
        let mut cursor = first.next_cursor;
        while let Some(next) = cursor {
            let page = catalog
                .reviews(product, next.parse().expect("numeric cursor"), 5)
                .expect("exists");
            seen += page.items.len() as u32;
            cursor = page.next_cursor;
        }
        assert_eq!(seen, first.total);
    }

    #[test]
    fn generated_orders_are_found_by_id_and_by_user() {
        let catalog = catalog();
        let user = (1..50)
            .find(|&id| !catalog.orders_of(id).is_empty())
            .expect("some user has orders");
        for order in catalog.orders_of(user) {
            assert_eq!(catalog.order(order.id), Some(order));
        }
    }

    #[test]
    fn placed_orders_are_priced_and_stored() {
        let catalog = catalog();
        let user = catalog.user(3).expect("exists");
        let new = NewOrder {
            user_id: Some(3),
            lines: vec![NewOrderLine {
                product_id: 5,
                quantity: 2,
            }],
        };
        let order = catalog
            .place_order(&new, Some(&user.tenant), EPOCH)
            .expect("placed");
        assert_eq!(
            order.total_minor,
            2 * catalog.price(5).expect("exists").amount_minor
        );
        assert_eq!(catalog.order(order.id), Some(order.clone()));
        assert!(catalog.orders_of(3).contains(&order));
        assert!(matches!(
            catalog.place_order(&new, Some("someone-else"), EPOCH),
            Err(OrderError::WrongTenant(3))
        ));
        let empty = NewOrder {
            user_id: Some(3),
            lines: vec![],
        };
        assert!(matches!(
            catalog.place_order(&empty, None, EPOCH),
            Err(OrderError::Empty)
        ));
    }

    #[test]
    fn a_partner_places_orders_for_its_tenant_and_lists_the_tenants_orders() {
        let catalog = catalog();
        let partner_order = NewOrder {
            user_id: None,
            lines: vec![NewOrderLine {
                product_id: 9,
                quantity: 1,
            }],
        };
        assert!(matches!(
            catalog.place_order(&partner_order, None, EPOCH),
            Err(OrderError::NoTenant)
        ));
        let placed = catalog
            .place_order(&partner_order, Some("globex"), EPOCH + 400 * 86_400)
            .expect("placed");
        assert_eq!((placed.tenant.as_str(), placed.user_id), ("globex", None));
        let globex = catalog.orders_of_tenant("globex");
        assert_eq!(globex.first(), Some(&placed), "the newest first");
        assert!(globex.iter().all(|order| order.tenant == "globex"));
        let users_orders: usize = (1..=1_000)
            .filter(|&id| catalog.user(id).is_some_and(|user| user.tenant == "globex"))
            .map(|id| catalog.orders_of(id).len())
            .sum();
        assert_eq!(
            globex.len(),
            users_orders + 1,
            "every user's order and the partner's"
        );
        assert!(!catalog.orders_of_tenant("acme").contains(&placed));
    }

    #[test]
    fn the_product_feed_filters_and_continues_where_it_stopped() {
        let catalog = catalog();
        let since = EPOCH + 200 * 86_400;
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let (page, next) = catalog
                .products_after(after, Some("audio"), Some(since), 7)
                .expect("a category");
            assert!(page.len() <= 7);
            seen.extend(page);
            match next {
                Some(next) => after = next,
                None => break,
            }
        }
        let expected: Vec<Product> = (1..=catalog.product_count())
            .filter_map(|id| catalog.product(id))
            .filter(|product| product.category == "audio" && product.updated_at >= since)
            .collect();
        assert!(expected.len() > 7, "more than a page: {}", expected.len());
        assert_eq!(seen, expected);
        assert!(
            catalog
                .products_after(0, Some("no-such"), None, 5)
                .is_none()
        );
        let (first, next) = catalog.products_after(0, None, None, 3).expect("all");
        assert_eq!(first.iter().map(|p| p.id).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(next, Some(3));
    }

    #[test]
    fn a_review_summary_counts_each_rating() {
        let catalog = catalog();
        let product = (1..100)
            .find(|&id| catalog.review_count(id) > 12)
            .expect("some product has many reviews");
        let all = catalog.reviews(product, 0, MAX_REVIEWS).expect("exists");
        let mut counted = [0; 5];
        for review in &all.items {
            counted[usize::from(review.rating - 1)] += 1;
        }
        assert_eq!(all.histogram, counted);
        assert_eq!(all.histogram.iter().sum::<u32>(), all.total);
        let stars: u32 = all
            .items
            .iter()
            .map(|review| u32::from(review.rating))
            .sum();
        assert!((all.average_rating - stars as f32 / all.total as f32).abs() < 1e-6);
    }

    #[test]
    fn a_category_lists_each_of_its_products_once_in_every_order() {
        let catalog = catalog();
        let facets = catalog.category_facets("kitchen").expect("a category");
        for sort in ProductSort::ALL {
            let mut seen = Vec::new();
            let mut offset = 0;
            loop {
                let (page, next) = catalog
                    .category_page("kitchen", sort, offset, 100)
                    .expect("a category");
                assert!(page.iter().all(|product| product.category == "kitchen"));
                seen.extend(page.iter().map(|product| product.id));
                match next {
                    Some(next) => offset = next,
                    None => break,
                }
            }
            assert_eq!(seen.len() as u32, facets.total, "{sort:?}");
            let mut unique = seen.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), seen.len(), "{sort:?}: no product twice");
        }
        let prices: Vec<i64> = catalog
            .category_page("kitchen", ProductSort::PriceAsc, 0, 50)
            .expect("a category")
            .0
            .iter()
            .map(|product| catalog.price(product.id).expect("priced").amount_minor)
            .collect();
        assert!(
            prices.windows(2).all(|pair| pair[0] <= pair[1]),
            "{prices:?}"
        );
        let newest: Vec<u64> = catalog
            .category_page("kitchen", ProductSort::Newest, 0, 50)
            .expect("a category")
            .0
            .iter()
            .map(|product| product.created_at)
            .collect();
        assert!(newest.windows(2).all(|pair| pair[0] >= pair[1]));
        assert!(
            catalog
                .category_page("attic", ProductSort::Relevance, 0, 10)
                .is_none()
        );
    }

    #[test]
    fn facets_add_up_to_the_category() {
        let catalog = catalog();
        let total: u32 = CATEGORIES
            .iter()
            .map(|slug| {
                let facets = catalog.category_facets(slug).expect("a category");
                assert_eq!(
                    facets.brands.iter().map(|brand| brand.count).sum::<u32>(),
                    facets.total
                );
                assert_eq!(
                    facets
                        .price_bands
                        .iter()
                        .map(|band| band.count)
                        .sum::<u32>(),
                    facets.total
                );
                assert!(facets.in_stock <= facets.total && facets.in_stock > 0);
                assert!(
                    facets
                        .brands
                        .windows(2)
                        .all(|pair| pair[0].count >= pair[1].count)
                );
                facets.total
            })
            .sum();
        assert_eq!(u64::from(total), catalog.product_count());
    }

    #[test]
    fn related_products_share_the_category_and_exclude_the_product() {
        let catalog = catalog();
        let product = catalog.product(42).expect("exists");
        let related = catalog.related(42, 8).expect("exists");
        assert_eq!(related.len(), 8);
        assert!(
            related
                .iter()
                .all(|other| other.category == product.category)
        );
        assert!(related.iter().all(|other| other.id != 42));
        assert_ne!(
            catalog.related(43, 8).expect("exists")[0].id,
            related[0].id,
            "neighbours differ"
        );
        assert!(catalog.related(0, 8).is_none());
    }

    #[test]
    fn recommendations_are_distinct_existing_products() {
        let catalog = catalog();
        let recommended = catalog.recommendations(7, 12).expect("a user");
        assert_eq!(recommended.items.len(), 12);
        let mut ids: Vec<u64> = recommended
            .items
            .iter()
            .map(|item| item.product_id)
            .collect();
        assert!(ids.iter().all(|id| catalog.product(*id).is_some()));
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 12);
        assert_eq!(catalog.recommendations(7, 12), Some(recommended));
        assert_eq!(
            catalog
                .recommendations(7, 1_000)
                .expect("a user")
                .items
                .len() as u64,
            MAX_RECOMMENDATIONS
        );
        assert!(catalog.recommendations(0, 5).is_none());
    }

    #[test]
    fn a_users_orders_come_newest_first() {
        let catalog = catalog();
        let user = (1..100)
            .find(|&id| catalog.orders_of(id).len() >= 3)
            .expect("a user with orders");
        let orders = catalog.orders_of(user);
        assert!(
            orders
                .windows(2)
                .all(|pair| pair[0].created_at >= pair[1].created_at)
        );
    }
}

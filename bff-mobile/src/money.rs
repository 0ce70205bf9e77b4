//! Money as the app shows it: minor units and a currency, never a float,
//! and the amount written out in the caller's language (`Accept-Language`).
//!
//! The amount is always the service's, in minor units; `formatted` is
//! presentation only. The patterns of the few languages the app ships in
//! are a table here, as CLDR (and so `Intl.NumberFormat`) writes them: an
//! ICU currency formatter (ICU4X) would bring dozens of crates and a data
//! blob for six rows.

use async_graphql::{Context, Object};
use axum::http::{HeaderMap, header};

/// A language the amounts are written in, from `Accept-Language`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Locale {
    /// `€1,234.56` (the default).
    #[default]
    English,
    /// `1.234,56 €`
    German,
    /// `1 234,56 €`
    French,
    /// `1234,56 €`, `12.345,67 €`
    Spanish,
    /// `1234,56 €`, `12.345,67 €`
    Italian,
    /// `€ 1.234,56`, `€ -0,05`
    Dutch,
}

/// How a language writes an amount.
struct Pattern {
    group: &'static str,
    decimal: char,
    /// Fewest integer digits before grouping starts (Spanish groups from 5).
    min_grouping_digits: usize,
    symbol_first: bool,
    /// Between the symbol and the number.
    gap: &'static str,
    /// Whether a minus goes between the symbol and the number (`€ -0,05`)
    /// rather than before both (`-€0.05`).
    sign_after_symbol: bool,
}

impl Locale {
    /// The first language of `Accept-Language`, by preference, that the app
    /// ships in; English when there is none.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let Some(accepted) = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|value| value.to_str().ok())
        else {
            return Self::default();
        };
        let mut ranges: Vec<(f32, &str)> = accepted
            .split(',')
            .filter_map(|range| {
                let mut parts = range.split(';').map(str::trim);
                let tag = parts.next().filter(|tag| !tag.is_empty())?;
                let weight = parts
                    .find_map(|parameter| parameter.strip_prefix("q="))
                    .map_or(Some(1.0), |q| q.parse::<f32>().ok())?;
                (weight > 0.0).then_some((weight, tag))
            })
            .collect();
        // Stable: equal weights keep the client's order.
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranges
            .into_iter()
            .find_map(|(_, tag)| Self::of_language(tag.split('-').next().unwrap_or(tag)))
            .unwrap_or_default()
    }

    fn of_language(language: &str) -> Option<Self> {
        Some(match language.to_ascii_lowercase().as_str() {
            "en" => Self::English,
            "de" => Self::German,
            "fr" => Self::French,
            "es" => Self::Spanish,
            "it" => Self::Italian,
            "nl" => Self::Dutch,
            _ => return None,
        })
    }

    fn pattern(self) -> Pattern {
        const NBSP: &str = "\u{a0}";
        let (group, decimal, min_grouping_digits, symbol_first, gap) = match self {
            Self::English => (",", '.', 4, true, ""),
            Self::German => (".", ',', 4, false, NBSP),
            Self::French => ("\u{202f}", ',', 4, false, NBSP),
            Self::Spanish | Self::Italian => (".", ',', 5, false, NBSP),
            Self::Dutch => (".", ',', 4, true, NBSP),
        };
        Pattern {
            group,
            decimal,
            min_grouping_digits,
            symbol_first,
            gap,
            sign_after_symbol: self == Self::Dutch,
        }
    }

    /// `amount_minor` of `currency` written out: `1299` EUR is `€12.99` in
    /// English, `12,99 €` in German.
    pub(crate) fn format(self, amount_minor: i64, currency: &str) -> String {
        let pattern = self.pattern();
        let digits = minor_digits(currency);
        let scale = 10u64.pow(digits);
        let amount = amount_minor.unsigned_abs();
        let whole = (amount / scale).to_string();
        let mut number = String::with_capacity(whole.len() + 8);
        let grouped = whole.len() >= pattern.min_grouping_digits;
        for (index, digit) in whole.chars().enumerate() {
            let left = whole.len() - index;
            if grouped && index > 0 && left.is_multiple_of(3) {
                number.push_str(pattern.group);
            }
            number.push(digit);
        }
        if digits > 0 {
            number.push(pattern.decimal);
            number.push_str(&format!(
                "{:0width$}",
                amount % scale,
                width = digits as usize
            ));
        }
        let symbol = symbol(currency);
        // A code written out (`CHF`) is always set apart from the number.
        let gap = if symbol.chars().all(|c| c.is_ascii_alphabetic()) && pattern.gap.is_empty() {
            "\u{a0}"
        } else {
            pattern.gap
        };
        let sign = if amount_minor < 0 { "-" } else { "" };
        match (pattern.symbol_first, pattern.sign_after_symbol) {
            (true, true) => format!("{symbol}{gap}{sign}{number}"),
            (true, false) => format!("{sign}{symbol}{gap}{number}"),
            (false, _) => format!("{sign}{number}{gap}{symbol}"),
        }
    }
}

/// Digits after the decimal point of `currency` (ISO 4217).
fn minor_digits(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "ISK" | "CLP" | "VND" => 0,
        _ => 2,
    }
}

/// The sign of `currency`, or its code when it has none known here.
fn symbol(currency: &str) -> &str {
    match currency {
        "EUR" => "€",
        "USD" => "$",
        "GBP" => "£",
        "JPY" => "¥",
        other => other,
    }
}

/// An amount of money: minor units of a currency, never a float.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Money {
    pub(crate) amount_minor: i64,
    pub(crate) currency: String,
}

#[Object]
impl Money {
    /// The amount in minor units of `currency` (cents for EUR): exact, for
    /// arithmetic.
    async fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    /// ISO 4217 currency code, for example `EUR`.
    async fn currency(&self) -> &str {
        &self.currency
    }

    /// The amount written out in the caller's language (`Accept-Language`),
    /// for example `€12.99` or `12,99 €`; for display only.
    async fn formatted(&self, ctx: &Context<'_>) -> String {
        let locale = ctx.data_opt::<Locale>().copied().unwrap_or_default();
        locale.format(self.amount_minor, &self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn locale_of(accept_language: &str) -> Locale {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_str(accept_language).expect("a header value"),
        );
        Locale::from_headers(&headers)
    }

    #[test]
    fn the_most_preferred_language_shipped_wins() {
        assert_eq!(Locale::from_headers(&HeaderMap::new()), Locale::English);
        assert_eq!(locale_of("de-DE,de;q=0.9,en;q=0.8"), Locale::German);
        assert_eq!(locale_of("en;q=0.5, fr-CA"), Locale::French);
        assert_eq!(locale_of("pt-BR, nl;q=0.3, es;q=0.2"), Locale::Dutch);
        assert_eq!(locale_of("fr;q=0, it"), Locale::Italian);
        assert_eq!(locale_of("ja, *;q=0.1"), Locale::English);
        assert_eq!(locale_of("DE"), Locale::German);
        assert_eq!(locale_of(";;, q=1, de;q=x"), Locale::English);
    }

    #[test]
    fn amounts_are_written_as_each_language_writes_them() {
        let cases = [
            (Locale::English, 123_456_789, "EUR", "€1,234,567.89"),
            (Locale::English, 1299, "EUR", "€12.99"),
            (Locale::English, -5, "USD", "-$0.05"),
            (Locale::German, 123_456, "EUR", "1.234,56\u{a0}€"),
            (Locale::French, 123_456, "EUR", "1\u{202f}234,56\u{a0}€"),
            (Locale::Spanish, 123_456, "EUR", "1234,56\u{a0}€"),
            (Locale::Spanish, 1_234_567, "EUR", "12.345,67\u{a0}€"),
            (Locale::Italian, 99, "GBP", "0,99\u{a0}£"),
            (Locale::Italian, 190_234, "EUR", "1902,34\u{a0}€"),
            (Locale::Italian, 1_234_567, "EUR", "12.345,67\u{a0}€"),
            (Locale::Dutch, 123_456, "EUR", "€\u{a0}1.234,56"),
            (Locale::Dutch, -5, "EUR", "€\u{a0}-0,05"),
            (Locale::French, -123_450, "EUR", "-1\u{202f}234,50\u{a0}€"),
            (Locale::English, 1500, "JPY", "¥1,500"),
            (Locale::English, 100_000, "CHF", "CHF\u{a0}1,000.00"),
            (Locale::German, 100_000, "CHF", "1.000,00\u{a0}CHF"),
        ];
        for (locale, amount, currency, written) in cases {
            assert_eq!(locale.format(amount, currency), written, "{locale:?}");
        }
    }
}

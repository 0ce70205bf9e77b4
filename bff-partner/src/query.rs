//! A route's query parameters, checked all at once: every parameter that is
//! wrong (unknown, repeated, out of its range) is named in one 422
//! `INVALID_QUERY`, so a partner fixes an integration in one round, and a
//! misspelt parameter is refused rather than silently ignored.

use gateway_core::Error;
use shared_schema::InvalidParam;

/// The parameters of one request, taken one by one by name.
#[derive(Debug)]
pub(crate) struct QueryParams {
    pairs: Vec<(String, String)>,
    invalid: Vec<InvalidParam>,
}

impl QueryParams {
    /// `pairs` as sent; any whose name is not in `known` is invalid.
    pub(crate) fn new(pairs: Vec<(String, String)>, known: &[&str]) -> Self {
        let mut invalid = Vec::new();
        for (name, _) in &pairs {
            if !known.contains(&name.as_str())
                && !invalid
                    .iter()
                    .any(|param: &InvalidParam| param.name == *name)
            {
                invalid.push(InvalidParam {
                    name: name.clone(),
                    reason: format!(
                        "is not a parameter of this operation ({})",
                        known.join(", ")
                    ),
                });
            }
        }
        Self { pairs, invalid }
    }

    /// Parameter `name` read by `parse`, or `None` when it is absent or
    /// invalid (then recorded with the reason `parse` gave).
    pub(crate) fn take<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let mut values = self.pairs.iter().filter(|(key, _)| key == name);
        let (first, second) = (values.next(), values.next());
        let reason = match (first, second) {
            (None, _) => return None,
            (Some(_), Some(_)) => "is given more than once".to_owned(),
            (Some((_, value)), None) => match parse(value) {
                Ok(value) => return Some(value),
                Err(reason) => reason,
            },
        };
        self.invalid.push(InvalidParam {
            name: name.to_owned(),
            reason,
        });
        None
    }

    /// Done taking: a 422 naming every invalid parameter, if any was.
    pub(crate) fn finish(self) -> Result<(), Error> {
        if self.invalid.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid_query(self.invalid))
        }
    }
}

/// A whole number from `min` to `max`.
pub(crate) fn number_in(min: u32, max: u32) -> impl FnOnce(&str) -> Result<u32, String> {
    move |text| {
        text.parse::<u32>()
            .ok()
            .filter(|number| (min..=max).contains(number))
            .ok_or_else(|| format!("must be a whole number from {min} to {max}"))
    }
}

/// Query pairs as a request carries them, for tests.
#[cfg(test)]
pub(crate) fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
    query
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// The parameters a 422 `INVALID_QUERY` names, in order, for tests.
#[cfg(test)]
pub(crate) fn invalid_names(error: &Error) -> Vec<String> {
    let problem = error.problem();
    assert_eq!(
        (problem.status, problem.code.as_str()),
        (422, "INVALID_QUERY")
    );
    problem.errors.into_iter().map(|param| param.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wrong_parameter_is_named_once() {
        let mut query = QueryParams::new(
            pairs(&[
                ("limit", "0"),
                ("limt", "5"),
                ("cursor", "a"),
                ("cursor", "b"),
                ("limt", "6"),
            ]),
            &["limit", "cursor"],
        );
        assert_eq!(query.take("limit", number_in(1, 100)), None);
        assert_eq!(query.take("cursor", |text| Ok(text.to_owned())), None);
        let error = query.finish().expect_err("invalid");
        assert_eq!(invalid_names(&error), ["limt", "limit", "cursor"]);
    }

    #[test]
    fn good_and_absent_parameters_pass() {
        let mut query = QueryParams::new(pairs(&[("limit", "20")]), &["limit", "cursor"]);
        assert_eq!(query.take("limit", number_in(1, 100)), Some(20));
        assert_eq!(query.take("cursor", |text| Ok(text.to_owned())), None);
        query.finish().expect("valid");
    }
}

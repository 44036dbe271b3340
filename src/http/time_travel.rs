//! Time travel: the `as_of` and `version` query parameters that ask a ticket, its
//! comments, a project or an asset as it stood at a moment, rebuilt from the event log.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{AppError, Result};
use crate::store::event_history::AsOf;

/// Asks for the record as it stood at a moment. Give at most one of the two.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TimeTravel {
    /// The record as it stood at this time (RFC 3339, e.g. `2026-11-27T10:00:00Z`;
    /// URL-encode a `+` offset as `%2B`): rebuilt from the events the log recorded at or
    /// before it. 404 if the record did not exist yet.
    pub as_of: Option<String>,
    /// The record at this version (1 is its creation; the `version` field and `ETag` of
    /// a read). 404 for 0 or a version the record has not reached; 422 for anything
    /// but a whole number.
    pub version: Option<String>,
}

impl TimeTravel {
    /// The moment asked for, or `None` for the record as it is now.
    pub fn as_of(&self) -> Result<Option<AsOf>> {
        match (&self.as_of, &self.version) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(AppError::invalid(
                "as_of",
                "Give either as_of or version, not both",
            )),
            (Some(time), None) => parse_time(time).map(|time| Some(AsOf::Time(time))),
            (None, Some(version)) => version
                .trim()
                .parse::<u64>()
                .map(|version| Some(AsOf::Version(version)))
                .map_err(|_| AppError::invalid("version", "Must be a whole number, e.g. 3")),
        }
    }
}

fn parse_time(raw: &str) -> Result<DateTime<Utc>> {
    let raw = raw.trim();
    DateTime::parse_from_rfc3339(raw)
        // A `+` offset sent unencoded arrives as a space.
        .or_else(|error| DateTime::parse_from_rfc3339(&raw.replace(' ', "+")).map_err(|_| error))
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| {
            AppError::invalid(
                "as_of",
                "Must be an RFC 3339 time, e.g. 2026-11-27T10:00:00Z",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(as_of: Option<&str>, version: Option<&str>) -> Result<Option<AsOf>> {
        TimeTravel {
            as_of: as_of.map(str::to_owned),
            version: version.map(str::to_owned),
        }
        .as_of()
    }

    #[test]
    fn a_time_with_an_unencoded_plus_offset_is_read() {
        let expected = DateTime::parse_from_rfc3339("2026-11-27T09:00:00Z")
            .map(|time| time.with_timezone(&Utc))
            .ok();
        let Ok(Some(AsOf::Time(time))) = ask(Some("2026-11-27T10:00:00 01:00"), None) else {
            panic!("the time is read");
        };
        assert_eq!(Some(time), expected);
    }

    #[test]
    fn both_parameters_or_a_malformed_one_are_refused() {
        assert!(ask(Some("2026-11-27T10:00:00Z"), Some("2")).is_err());
        assert!(ask(Some("yesterday"), None).is_err());
        assert!(ask(None, Some("two")).is_err());
        assert!(ask(None, Some("-1")).is_err());
        assert!(matches!(ask(None, Some("0")), Ok(Some(AsOf::Version(0)))));
        assert!(matches!(ask(None, None), Ok(None)));
    }
}

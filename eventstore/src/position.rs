//! Positions in the `$all` log.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A position in `$all`: the pair (commit group, allocation order).
///
/// Events are ordered by the id of the transaction that wrote them, then by their allocated
/// position. Readers only see transactions older than every transaction still running, so no event
/// can appear later below a position a reader has passed. A checkpoint is always this pair: the
/// allocated position alone is not monotonic in `$all` order (a later transaction can own a lower one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The writing transaction's id (`xid8` in Postgres). Compared first.
    pub transaction_id: u64,
    /// The allocated position, unique across the store, with gaps.
    pub global_position: u64,
}

impl Position {
    /// Before the first event.
    pub const START: Position = Position { transaction_id: 0, global_position: 0 };
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transaction_id, self.global_position)
    }
}

/// A position text that is not `<transaction_id>:<global_position>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("position {0:?} is not `<transaction_id>:<global_position>`")]
pub struct PositionParseError(String);

impl FromStr for Position {
    type Err = PositionParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PositionParseError(s.to_owned());
        let (tx, gp) = s.split_once(':').ok_or_else(err)?;
        Ok(Position { transaction_id: tx.parse().map_err(|_| err())?, global_position: gp.parse().map_err(|_| err())? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_id_orders_before_global_position() {
        let early_tx_late_position = Position { transaction_id: 10, global_position: 99 };
        let late_tx_early_position = Position { transaction_id: 11, global_position: 5 };
        assert!(early_tx_late_position < late_tx_early_position);
    }

    #[test]
    fn a_position_round_trips_through_text() {
        let p = Position { transaction_id: 746, global_position: 1 };
        assert_eq!(p.to_string(), "746:1");
        assert_eq!("746:1".parse::<Position>().unwrap(), p);
        assert!("746".parse::<Position>().is_err());
        assert!("a:1".parse::<Position>().is_err());
    }
}

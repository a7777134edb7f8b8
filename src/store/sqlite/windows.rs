//! The writer's connection and what it remembers of the open digest
//! windows between writes.
//!
//! A member joining a window needs the window's id and how many members it
//! holds (the member that fills it to `max_events` closes it). Reading and
//! updating the window's `digests` row for every member cost the one
//! writer about half of what a membership costs (an upsert through the
//! `digests_open` index and a row rewritten per member); the writer keeps
//! both in memory instead, and the row is written when the window opens
//! and when it stops taking members. So, on SQLite, `digests.count` holds
//! the members of a window that is `closing` or `closed`; an open window's
//! members are its rows in `digest_members`, and the writer counts them
//! there when it does not remember the window (after a restart, or after a
//! rollback made it forget: [`Writer::forget_windows`]).
//!
//! Owns: [`Writer`] and the digest joins and seals that use its memory.
//! Touches only the SQLite connection it wraps.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Deref;

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::{DigestMember, StoreError};

/// The writer thread's connection, and the open windows it knows. Writes
/// get it as `&Writer`; it derefs to the [`Connection`].
pub(super) struct Writer {
    conn: Connection,
    windows: RefCell<Windows>,
}

/// A window is open per webhook and group (`digests_open`): by webhook id,
/// then group, so a join finds its window without building a key (a
/// webhook's map stays when its windows go: it opens another soon).
type Windows = HashMap<String, HashMap<String, Window>>;

/// An open window as the writer knows it: committed members, plus those
/// joined in the transaction under way (forgotten if it rolls back).
struct Window {
    id: String,
    members: i64,
    max_events: i64,
}

impl Deref for Writer {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Writer {
    pub(super) fn new(conn: Connection) -> Writer {
        Writer {
            conn,
            windows: RefCell::default(),
        }
    }

    /// Forgets every window: called when a transaction rolls back (wholly
    /// or to a savepoint), since joins it undid may have been counted. The
    /// next join of each window reads it from the database.
    pub(super) fn forget_windows(&self) {
        self.windows.borrow_mut().clear();
    }

    /// Adds an event to its webhook's open window for its group (opening
    /// one when there is none); a window that reaches `max_events` stops
    /// taking members (`closing`, with its `count`) in the same
    /// transaction, so none ever holds more. The member row, with its time,
    /// is the event's `digested` decision.
    pub(super) fn join_digest(
        &self,
        m: &DigestMember,
        event_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut windows = self.windows.borrow_mut();
        // Taken out with its key and put back with it: no key is built
        // but for a window this writer has not seen.
        let known = windows
            .get_mut(m.webhook_id.as_str())
            .and_then(|groups| groups.remove_entry(m.group.as_str()));
        let (group, window) = match known {
            Some(kv) => kv,
            None => (m.group.clone(), self.open_window(m, now)?),
        };
        let seq = window.members + 1;
        self.prepare_cached(
            "INSERT INTO digest_members (digest_id, seq, event_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![window.id, seq, event_id, now])?;
        if seq == 1 {
            self.prepare_cached(
                "UPDATE digests SET first_member = last_insert_rowid() WHERE id = ?1",
            )?
            .execute([&window.id])?;
        }
        if seq >= window.max_events {
            self.prepare_cached(
                "UPDATE digests SET state = 'closing', count = ?2 WHERE id = ?1 AND state = 'open'",
            )?
            .execute(params![window.id, seq])?;
            return Ok(());
        }
        let window = Window {
            members: seq,
            ..window
        };
        match windows.get_mut(m.webhook_id.as_str()) {
            Some(groups) => {
                groups.insert(group, window);
            }
            None => {
                windows.insert(m.webhook_id.clone(), HashMap::from([(group, window)]));
            }
        }
        Ok(())
    }

    /// The open window of `m`'s webhook and group from the database
    /// (its members counted), or a new one.
    fn open_window(&self, m: &DigestMember, now: i64) -> Result<Window, StoreError> {
        let open: Option<(String, i64, Option<i64>)> = self
            .prepare_cached(
                "SELECT id, max_events, first_member FROM digests
                 WHERE webhook_id = ?1 AND grp = ?2 AND state = 'open'",
            )?
            .query_row(params![m.webhook_id, m.group], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        if let Some((id, max_events, first)) = open {
            let members = self.count_members(&id, first)?;
            return Ok(Window {
                id,
                members,
                max_events,
            });
        }
        let id = crate::event::new_id();
        self.prepare_cached(
            "INSERT INTO digests (id, webhook_id, grp, state, count, max_events, opened_at, closes_at, webhook_name)
             VALUES (?1, ?2, ?3, 'open', 0, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            id,
            m.webhook_id,
            m.group,
            m.max_events,
            now,
            now + m.window_ms,
            m.webhook_name
        ])?;
        Ok(Window {
            id,
            members: 0,
            max_events: i64::from(m.max_events),
        })
    }

    /// The members of window `id` in `digest_members`: its rows from its
    /// first on (from the table's start when that is unknown).
    fn count_members(&self, id: &str, first: Option<i64>) -> Result<i64, StoreError> {
        Ok(self
            .prepare_cached(
                "SELECT COUNT(*) FROM digest_members WHERE rowid >= ?1 AND digest_id = ?2",
            )?
            .query_row(params![first.unwrap_or(0), id], |r| r.get(0))?)
    }

    /// Stops a window taking members (`closing`, with its `count`) and
    /// answers its webhook, group and opening time. `None` when it is
    /// closed already or unknown. The members are read after the commit
    /// (`digest_members`, on a reader): a closing window takes no member,
    /// so that read sees all of them, and the writer does not spend its
    /// time reading and parsing up to `max_events` bodies.
    pub(super) fn seal_digest(
        &self,
        id: &str,
    ) -> Result<Option<(String, String, i64)>, StoreError> {
        let row: Option<(String, String, i64, String, Option<i64>)> = self
            .prepare_cached(
                "SELECT webhook_id, grp, opened_at, state, first_member FROM digests WHERE id = ?1",
            )?
            .query_row([id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        let Some((webhook_id, group, opened_at, state, first)) = row else {
            return Ok(None);
        };
        match state.as_str() {
            "open" => {
                let remembered = {
                    let mut windows = self.windows.borrow_mut();
                    match windows.get_mut(&webhook_id) {
                        Some(g) if g.get(&group).is_some_and(|w| w.id == id) => {
                            g.remove(&group).map(|w| w.members)
                        }
                        _ => None,
                    }
                };
                let members = match remembered {
                    Some(n) => n,
                    None => self.count_members(id, first)?,
                };
                self.prepare_cached(
                    "UPDATE digests SET state = 'closing', count = ?2 WHERE id = ?1",
                )?
                .execute(params![id, members])?;
                Ok(Some((webhook_id, group, opened_at)))
            }
            "closing" => Ok(Some((webhook_id, group, opened_at))),
            _ => Ok(None),
        }
    }
}

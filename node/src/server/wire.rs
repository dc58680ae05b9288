//! How Raft messages travel between nodes ([`Wire`] for the core's [`Message`]).
//!
//! The hot message, AppendEntries, and the big one, InstallSnapshot, use a little binary layout
//! (entries as in the WAL: a tag byte then the command bytes, not JSON arrays of numbers); every
//! other message is JSON. Layout, little endian, after a tag byte:
//!
//! ```text
//! 0: JSON of the whole Message
//! 1: Append: from, to, term, prev_log_index, prev_log_term, commit (u64 each), n: u32,
//!    n x [index: u64][term: u64][len: u32][entry payload]
//! 2: InstallSnapshot: from, to, term (u64 each), meta_len: u32, meta JSON, data (the rest)
//! ```

use super::node::{decode_entry, stored_entry};
use crate::raft::{Entry, Message, MessageBody, Snapshot};
use crate::storage::StoredEntry;
use crate::transport::Wire;

const JSON: u8 = 0;
const APPEND: u8 = 1;
const SNAPSHOT: u8 = 2;

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.b.len() < n {
            return Err(format!(
                "message truncated: need {n} bytes, have {}",
                self.b.len()
            ));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
}

impl Wire for Message {
    fn encode(&self, out: &mut Vec<u8>) {
        let head = |out: &mut Vec<u8>, tag: u8| {
            out.push(tag);
            for v in [self.from, self.to, self.term] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        };
        match &self.body {
            MessageBody::Append {
                prev_log_index,
                prev_log_term,
                entries,
                commit,
            } => {
                head(out, APPEND);
                for v in [*prev_log_index, *prev_log_term, *commit] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
                for e in entries {
                    let se = stored_entry(e);
                    out.extend_from_slice(&se.index.to_le_bytes());
                    out.extend_from_slice(&se.term.to_le_bytes());
                    out.extend_from_slice(&(se.data.len() as u32).to_le_bytes());
                    out.extend_from_slice(&se.data);
                }
            }
            MessageBody::InstallSnapshot { snapshot } => {
                head(out, SNAPSHOT);
                let meta = serde_json::to_vec(&snapshot.meta).expect("snapshot meta serializes");
                out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
                out.extend_from_slice(&meta);
                out.extend_from_slice(&snapshot.data);
            }
            _ => {
                out.push(JSON);
                serde_json::to_writer(out, self).expect("messages serialize");
            }
        }
    }

    fn sender(&self) -> u64 {
        self.from
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (&tag, rest) = bytes.split_first().ok_or("empty message")?;
        if tag == JSON {
            return serde_json::from_slice(rest).map_err(|e| e.to_string());
        }
        let mut r = Reader { b: rest };
        let (from, to, term) = (r.u64()?, r.u64()?, r.u64()?);
        let body = match tag {
            APPEND => {
                let (prev_log_index, prev_log_term, commit) = (r.u64()?, r.u64()?, r.u64()?);
                let n = r.u32()? as usize;
                let mut entries: Vec<Entry> = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    let (index, term) = (r.u64()?, r.u64()?);
                    let len = r.u32()? as usize;
                    let data = r.take(len)?.to_vec();
                    entries.push(decode_entry(&StoredEntry { index, term, data })?);
                }
                if !r.b.is_empty() {
                    return Err("trailing bytes after entries".into());
                }
                MessageBody::Append {
                    prev_log_index,
                    prev_log_term,
                    entries,
                    commit,
                }
            }
            SNAPSHOT => {
                let len = r.u32()? as usize;
                let meta = serde_json::from_slice(r.take(len)?).map_err(|e| e.to_string())?;
                MessageBody::InstallSnapshot {
                    snapshot: Snapshot {
                        meta,
                        data: r.b.to_vec(),
                    },
                }
            }
            other => return Err(format!("unknown message tag {other}")),
        };
        Ok(Message {
            from,
            to,
            term,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{ConfChange, ConfChangeKind, Membership, Payload, RejectHint, SnapshotMeta};

    fn round_trip(m: Message) {
        let mut buf = Vec::new();
        m.encode(&mut buf);
        assert_eq!(Message::decode(&buf).unwrap(), m);
        // Every strict prefix is refused, never misread.
        for cut in 0..buf.len() {
            assert!(
                Message::decode(&buf[..cut]).is_err()
                    || matches!(m.body, MessageBody::InstallSnapshot { .. }),
                "prefix {cut}"
            );
        }
    }

    #[test]
    fn every_message_kind_round_trips() {
        let cc = ConfChange {
            kind: ConfChangeKind::AddVoter,
            node: 4,
            context: b"ctx".to_vec(),
        };
        let entries = vec![
            Entry {
                index: 5,
                term: 2,
                payload: Payload::Noop,
            },
            Entry {
                index: 6,
                term: 2,
                payload: Payload::Command(b"{\"op\":\"put\"}".to_vec()),
            },
            Entry {
                index: 7,
                term: 3,
                payload: Payload::Conf(cc),
            },
        ];
        let bodies = vec![
            MessageBody::Append {
                prev_log_index: 4,
                prev_log_term: 2,
                entries,
                commit: 3,
            },
            MessageBody::Append {
                prev_log_index: 0,
                prev_log_term: 0,
                entries: vec![],
                commit: 0,
            },
            MessageBody::InstallSnapshot {
                snapshot: Snapshot {
                    meta: SnapshotMeta {
                        index: 9,
                        term: 3,
                        membership: Membership::with_voters([1, 2, 3]),
                    },
                    data: vec![0, 1, 2, 255],
                },
            },
            MessageBody::Vote {
                last_log_index: 3,
                last_log_term: 1,
                transfer: true,
            },
            MessageBody::AppendResponse {
                result: Err(RejectHint {
                    rejected: 4,
                    conflict_term: Some(1),
                    conflict_index: 2,
                }),
            },
            MessageBody::Heartbeat {
                commit: 7,
                round: 9,
            },
            MessageBody::TimeoutNow,
        ];
        for body in bodies {
            round_trip(Message {
                from: 1,
                to: 2,
                term: 3,
                body,
            });
        }
    }

    #[test]
    fn commands_travel_as_raw_bytes() {
        let cmd = vec![b'x'; 1000];
        let m = Message {
            from: 1,
            to: 2,
            term: 1,
            body: MessageBody::Append {
                prev_log_index: 0,
                prev_log_term: 0,
                entries: vec![Entry {
                    index: 1,
                    term: 1,
                    payload: Payload::Command(cmd),
                }],
                commit: 0,
            },
        };
        let mut buf = Vec::new();
        m.encode(&mut buf);
        assert!(buf.len() < 1100, "{} bytes", buf.len());
    }
}

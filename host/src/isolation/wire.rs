//! The framing between the host and a plugin process.
//!
//! A frame is a `u32` little-endian length, then that many bytes: one tag byte and the
//! payload. Strings are a `u32` length and UTF-8 bytes. Records travel as one frame per
//! batch the plugin emitted (no JSON around them: the record's own JSON text is copied as
//! it is); every other message is small and rare, and carries JSON where the in-process
//! boundary does too.

use std::io::{self, Read, Write};

use tributary_sdk::host::{KeyBatch, RecordBatch};
use tributary_sdk::{ConnectorError, LogLevel, Record};

/// Larger frames are refused: no batch is near this, so it means a corrupt stream.
const MAX_FRAME: usize = 1 << 30;

/// Entry points of a plugin, as the host asks for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `spec()`
    Spec,
    /// `check(config)`
    Check,
    /// `discover(config)`
    Discover,
    /// `read(request)`
    Read,
    /// Load the library and answer its `info()` and `spec()` (`tributary plugins`, and
    /// learning which plugin an untrusted library is without loading it in the host).
    Describe,
}

impl Method {
    fn to_u8(self) -> u8 {
        match self {
            Method::Spec => 0,
            Method::Check => 1,
            Method::Discover => 2,
            Method::Read => 3,
            Method::Describe => 4,
        }
    }
    fn from_u8(v: u8) -> Result<Method, WireError> {
        Ok(match v {
            0 => Method::Spec,
            1 => Method::Check,
            2 => Method::Discover,
            3 => Method::Read,
            4 => Method::Describe,
            other => return Err(WireError::Corrupt(format!("unknown method {other}"))),
        })
    }
    /// The entry point's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Method::Spec => "spec",
            Method::Check => "check",
            Method::Discover => "discover",
            Method::Read => "read",
            Method::Describe => "describe",
        }
    }

    /// When a plugin process died, for messages: `during read`, `while loading`.
    pub fn during(self) -> String {
        match self {
            Method::Describe => "while loading".to_string(),
            other => format!("during {}", other.name()),
        }
    }
}

/// What the host sends to the plugin process.
#[derive(Debug, PartialEq)]
pub enum ToChild {
    /// The one call this process makes; `argument` is the JSON the entry point takes.
    Call {
        /// Which entry point.
        method: Method,
        /// Most verbose log level to forward.
        log_level: LogLevel,
        /// Config or read request as JSON (empty for `spec`).
        argument: String,
    },
    /// Stop: the run was cancelled, or the host refused what the plugin sent.
    Cancel {
        /// Returned to the plugin from every later call into the host.
        reason: String,
    },
    /// The host's answer to a control message.
    ControlReply(Result<(), String>),
}

/// What the plugin process sends to the host.
#[derive(Debug, PartialEq)]
pub enum FromChild {
    /// A batch of records.
    Records {
        /// Stream name.
        stream: String,
        /// The records, in order.
        records: Vec<Record>,
    },
    /// A state checkpoint (JSON).
    State {
        /// Stream name.
        stream: String,
        /// The state, JSON text.
        state: String,
    },
    /// Live keys inside a snapshot.
    Keys {
        /// Stream name.
        stream: String,
        /// The keys, in order.
        keys: Vec<String>,
    },
    /// A snapshot event (JSON of `SnapshotEvent`).
    Snapshot {
        /// Stream name.
        stream: String,
        /// The event, JSON text.
        event: String,
    },
    /// A control message (JSON of `ControlMessage`); the plugin waits for the reply.
    Control(String),
    /// A stream status (JSON of `StreamStatus`).
    Status {
        /// Stream name.
        stream: String,
        /// The status, JSON text.
        status: String,
    },
    /// A log event.
    Log {
        /// Level.
        level: LogLevel,
        /// The plugin's tracing target.
        target: String,
        /// The message.
        message: String,
    },
    /// The call returned: its JSON result (empty for `check` and `read`) or its error.
    Done(Result<String, ConnectorError>),
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The pipe failed.
    #[error("pipe: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not a frame of this protocol.
    #[error("corrupt frame: {0}")]
    Corrupt(String),
}

mod tag {
    pub const CALL: u8 = 1;
    pub const CANCEL: u8 = 2;
    pub const CONTROL_REPLY: u8 = 3;
    pub const RECORDS: u8 = 10;
    pub const STATE: u8 = 11;
    pub const KEYS: u8 = 12;
    pub const SNAPSHOT: u8 = 13;
    pub const CONTROL: u8 = 14;
    pub const STATUS: u8 = 15;
    pub const LOG: u8 = 16;
    pub const DONE: u8 = 17;
}

/// Builds one frame in a reusable buffer.
#[derive(Default)]
pub struct FrameBuf(Vec<u8>);

impl FrameBuf {
    fn start(&mut self, tag: u8) -> &mut Self {
        self.0.clear();
        self.0.extend_from_slice(&[0, 0, 0, 0, tag]);
        self
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: usize) -> &mut Self {
        // Lengths above u32 are refused by `finish` through MAX_FRAME.
        self.0
            .extend_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u32(s.len());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// Writes the finished frame to `out` (not flushed).
    fn write_to(&mut self, out: &mut impl Write) -> io::Result<()> {
        let len = self.0.len() - 4;
        if len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a frame of {len} bytes is over the limit of {MAX_FRAME}"),
            ));
        }
        self.0[..4].copy_from_slice(&(len as u32).to_le_bytes());
        out.write_all(&self.0)
    }

    /// Encodes and writes a message to the plugin process.
    pub fn send_to_child(&mut self, msg: &ToChild, out: &mut impl Write) -> io::Result<()> {
        match msg {
            ToChild::Call {
                method,
                log_level,
                argument,
            } => self
                .start(tag::CALL)
                .u8(method.to_u8())
                .u8(*log_level as u8)
                .str(argument),
            ToChild::Cancel { reason } => self.start(tag::CANCEL).str(reason),
            ToChild::ControlReply(Ok(())) => self.start(tag::CONTROL_REPLY).u8(1).str(""),
            ToChild::ControlReply(Err(e)) => self.start(tag::CONTROL_REPLY).u8(0).str(e),
        };
        self.write_to(out)
    }

    /// Encodes and writes a batch of records straight from the plugin's batch.
    pub fn send_records(
        &mut self,
        stream: &str,
        batch: &RecordBatch,
        out: &mut impl Write,
    ) -> io::Result<()> {
        self.start(tag::RECORDS).str(stream).u32(batch.len());
        for r in batch.iter() {
            self.str(r.pk);
            match r.cursor {
                Some(c) => self.u8(1).str(c),
                None => self.u8(0),
            };
            self.u8(u8::from(r.deleted)).str(r.data);
        }
        self.write_to(out)
    }

    /// Encodes and writes a batch of snapshot keys.
    pub fn send_keys(
        &mut self,
        stream: &str,
        keys: &KeyBatch,
        out: &mut impl Write,
    ) -> io::Result<()> {
        self.start(tag::KEYS).str(stream).u32(keys.len());
        for k in keys.iter() {
            self.str(k);
        }
        self.write_to(out)
    }

    /// Encodes and writes any message to the host.
    pub fn send_to_host(&mut self, msg: &FromChild, out: &mut impl Write) -> io::Result<()> {
        match msg {
            FromChild::Records { stream, records } => {
                self.start(tag::RECORDS).str(stream).u32(records.len());
                for r in records {
                    self.str(&r.pk);
                    match &r.cursor {
                        Some(c) => self.u8(1).str(c),
                        None => self.u8(0),
                    };
                    self.u8(u8::from(r.deleted)).str(&r.data);
                }
            }
            FromChild::Keys { stream, keys } => {
                self.start(tag::KEYS).str(stream).u32(keys.len());
                for k in keys {
                    self.str(k);
                }
            }
            FromChild::State { stream, state } => {
                self.start(tag::STATE).str(stream).str(state);
            }
            FromChild::Snapshot { stream, event } => {
                self.start(tag::SNAPSHOT).str(stream).str(event);
            }
            FromChild::Control(message) => {
                self.start(tag::CONTROL).str(message);
            }
            FromChild::Status { stream, status } => {
                self.start(tag::STATUS).str(stream).str(status);
            }
            FromChild::Log {
                level,
                target,
                message,
            } => {
                self.start(tag::LOG)
                    .u8(*level as u8)
                    .str(target)
                    .str(message);
            }
            FromChild::Done(Ok(value)) => {
                self.start(tag::DONE).u8(1).str(value);
            }
            FromChild::Done(Err(e)) => {
                let json = serde_json::to_string(e).unwrap_or_else(|_| {
                    r#"{"kind":"system","message":"unserializable error"}"#.to_string()
                });
                self.start(tag::DONE).u8(0).str(&json);
            }
        }
        self.write_to(out)
    }
}

/// Reads one frame into `buf` and returns its tag; `None` at a clean end of stream.
fn read_frame(input: &mut impl Read, buf: &mut Vec<u8>) -> Result<Option<u8>, WireError> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    input.read_exact(&mut len[1..])?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(WireError::Corrupt(format!("frame length {len}")));
    }
    buf.clear();
    buf.resize(len, 0);
    input.read_exact(buf)?;
    Ok(Some(buf[0]))
}

/// A cursor over one frame's payload.
struct Payload<'a>(&'a [u8]);

impl<'a> Payload<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Corrupt("frame ends early".to_string()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<usize, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn str(&mut self) -> Result<&'a str, WireError> {
        let n = self.u32()?;
        std::str::from_utf8(self.take(n)?)
            .map_err(|_| WireError::Corrupt("a string is not UTF-8".to_string()))
    }
    fn string(&mut self) -> Result<String, WireError> {
        self.str().map(str::to_string)
    }
}

/// Reads the next message from the host; `None` when the host closed the pipe.
pub fn read_from_host(
    input: &mut impl Read,
    buf: &mut Vec<u8>,
) -> Result<Option<ToChild>, WireError> {
    let Some(tag) = read_frame(input, buf)? else {
        return Ok(None);
    };
    let mut p = Payload(&buf[1..]);
    Ok(Some(match tag {
        tag::CALL => ToChild::Call {
            method: Method::from_u8(p.u8()?)?,
            log_level: LogLevel::from_u8(p.u8()?),
            argument: p.string()?,
        },
        tag::CANCEL => ToChild::Cancel {
            reason: p.string()?,
        },
        tag::CONTROL_REPLY => {
            let ok = p.u8()? == 1;
            let message = p.string()?;
            ToChild::ControlReply(if ok { Ok(()) } else { Err(message) })
        }
        other => {
            return Err(WireError::Corrupt(format!(
                "unknown tag {other} from the host"
            )))
        }
    }))
}

/// Reads the next message from the plugin process; `None` when it closed the pipe.
pub fn read_from_child(
    input: &mut impl Read,
    buf: &mut Vec<u8>,
) -> Result<Option<FromChild>, WireError> {
    let Some(tag) = read_frame(input, buf)? else {
        return Ok(None);
    };
    let mut p = Payload(&buf[1..]);
    Ok(Some(match tag {
        tag::RECORDS => {
            let stream = p.string()?;
            let n = p.u32()?;
            // Each record takes at least 10 bytes, so a corrupt count cannot over-allocate.
            let mut records = Vec::with_capacity(n.min(p.0.len() / 10));
            for _ in 0..n {
                let pk = p.string()?;
                let cursor = match p.u8()? {
                    0 => None,
                    _ => Some(p.string()?),
                };
                let deleted = p.u8()? != 0;
                let data = p.string()?;
                records.push(Record {
                    pk,
                    cursor,
                    deleted,
                    data,
                });
            }
            FromChild::Records { stream, records }
        }
        tag::KEYS => {
            let stream = p.string()?;
            let n = p.u32()?;
            let mut keys = Vec::with_capacity(n.min(p.0.len() / 4));
            for _ in 0..n {
                keys.push(p.string()?);
            }
            FromChild::Keys { stream, keys }
        }
        tag::STATE => FromChild::State {
            stream: p.string()?,
            state: p.string()?,
        },
        tag::SNAPSHOT => FromChild::Snapshot {
            stream: p.string()?,
            event: p.string()?,
        },
        tag::CONTROL => FromChild::Control(p.string()?),
        tag::STATUS => FromChild::Status {
            stream: p.string()?,
            status: p.string()?,
        },
        tag::LOG => FromChild::Log {
            level: LogLevel::from_u8(p.u8()?),
            target: p.string()?,
            message: p.string()?,
        },
        tag::DONE => {
            let ok = p.u8()? == 1;
            let text = p.string()?;
            FromChild::Done(if ok {
                Ok(text)
            } else {
                Err(serde_json::from_str(&text).unwrap_or_else(|_| ConnectorError::system(text)))
            })
        }
        other => {
            return Err(WireError::Corrupt(format!(
                "unknown tag {other} from the plugin process"
            )))
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through_child_pipe(msgs: &[FromChild]) -> Vec<FromChild> {
        let mut pipe = Vec::new();
        let mut frame = FrameBuf::default();
        for m in msgs {
            frame.send_to_host(m, &mut pipe).expect("encode");
        }
        let mut input = &pipe[..];
        let mut buf = Vec::new();
        std::iter::from_fn(|| read_from_child(&mut input, &mut buf).expect("decode")).collect()
    }

    #[test]
    fn every_message_from_the_plugin_survives_the_pipe() {
        let msgs = vec![
            FromChild::Records {
                stream: "contracts".into(),
                records: vec![
                    Record {
                        pk: "1".into(),
                        cursor: Some("2026-01-01".into()),
                        deleted: false,
                        data: r#"{"id":1,"name":"ünïcode"}"#.into(),
                    },
                    Record {
                        pk: "2".into(),
                        cursor: None,
                        deleted: true,
                        data: "{}".into(),
                    },
                ],
            },
            FromChild::Keys {
                stream: "contracts".into(),
                keys: vec!["1".into(), "".into()],
            },
            FromChild::State {
                stream: "s".into(),
                state: r#"{"c":1}"#.into(),
            },
            FromChild::Snapshot {
                stream: "s".into(),
                event: r#""complete""#.into(),
            },
            FromChild::Control(r#"{"config_update":{}}"#.into()),
            FromChild::Status {
                stream: "s".into(),
                status: r#""started""#.into(),
            },
            FromChild::Log {
                level: LogLevel::Warn,
                target: "t".into(),
                message: "m".into(),
            },
            FromChild::Done(Ok("{}".into())),
            FromChild::Done(Err(ConnectorError::auth("bad token"))),
        ];
        assert_eq!(through_child_pipe(&msgs), msgs);
    }

    #[test]
    fn a_plugin_batch_encodes_like_owned_records() {
        let records = vec![Record {
            pk: "k".into(),
            cursor: Some("c".into()),
            deleted: false,
            data: "{}".into(),
        }];
        let batch = RecordBatch::from_records(records.clone());
        let mut pipe = Vec::new();
        FrameBuf::default()
            .send_records("s", &batch, &mut pipe)
            .expect("encode");
        let mut buf = Vec::new();
        assert_eq!(
            read_from_child(&mut &pipe[..], &mut buf).expect("decode"),
            Some(FromChild::Records {
                stream: "s".into(),
                records
            })
        );
    }

    #[test]
    fn every_message_from_the_host_survives_the_pipe() {
        let msgs = vec![
            ToChild::Call {
                method: Method::Read,
                log_level: LogLevel::Debug,
                argument: r#"{"config":{}}"#.into(),
            },
            ToChild::Call {
                method: Method::Describe,
                log_level: LogLevel::Info,
                argument: String::new(),
            },
            ToChild::Cancel {
                reason: "cancelled".into(),
            },
            ToChild::ControlReply(Ok(())),
            ToChild::ControlReply(Err("disk full".into())),
        ];
        let mut pipe = Vec::new();
        let mut frame = FrameBuf::default();
        for m in &msgs {
            frame.send_to_child(m, &mut pipe).expect("encode");
        }
        let mut input = &pipe[..];
        let mut buf = Vec::new();
        let back: Vec<ToChild> =
            std::iter::from_fn(|| read_from_host(&mut input, &mut buf).expect("decode")).collect();
        assert_eq!(back, msgs);
    }

    #[test]
    fn truncated_and_oversized_frames_are_errors_not_panics() {
        let mut pipe = Vec::new();
        FrameBuf::default()
            .send_to_host(
                &FromChild::State {
                    stream: "s".into(),
                    state: "{}".into(),
                },
                &mut pipe,
            )
            .expect("encode");
        let mut buf = Vec::new();
        for cut in 1..pipe.len() {
            assert!(
                read_from_child(&mut &pipe[..cut], &mut buf).is_err(),
                "cut {cut}"
            );
        }
        let huge = (u32::MAX).to_le_bytes();
        assert!(read_from_child(&mut &huge[..], &mut buf).is_err());
    }
}

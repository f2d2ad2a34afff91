//! Two-stage apply pipeline: one thread reads, hashes and decompresses the
//! layer stream into 1 MiB chunks; the other parses the tar and writes
//! files. Chunks are recycled so steady state allocates nothing.

use std::io::{self, BufReader, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender};

use super::{Compression, Digest, HashReader};
use crate::error::{Error, Result};

pub(super) const CHUNK: usize = 1 << 20;

/// Chunks in flight between the stages.
pub(super) const DEPTH: usize = 8;

/// The tar side of the pipe: reads chunks until the producer hangs up.
pub(super) struct ChanReader {
    rx: Receiver<(Vec<u8>, usize)>,
    recycle: Sender<Vec<u8>>,
    cur: Vec<u8>,
    len: usize,
    pos: usize,
}

impl ChanReader {
    pub(super) fn new(rx: Receiver<(Vec<u8>, usize)>, recycle: Sender<Vec<u8>>) -> Self {
        Self {
            rx,
            recycle,
            cur: Vec::new(),
            len: 0,
            pos: 0,
        }
    }
}

impl Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.len {
            let done = std::mem::take(&mut self.cur);
            if done.capacity() > 0 {
                let _ = self.recycle.send(done);
            }
            match self.rx.recv() {
                Ok((b, n)) => {
                    self.cur = b;
                    self.len = n;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.len - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// What the producer saw of the uncompressed stream.
pub(super) struct Produced {
    pub(super) diff_id: Digest,
    pub(super) trailing_zeros: u64,
}

fn stream_err(e: io::Error) -> Error {
    Error::InvalidArgument(format!("layer stream: {e}"))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads `compressed` to its end, decompressing and hashing, and sends the
/// uncompressed bytes down `tx`. Ok(None) when the consumer hung up first.
pub(super) fn produce<R: Read>(
    compressed: &mut HashReader<R>,
    compression: Compression,
    tx: SyncSender<(Vec<u8>, usize)>,
    recycled: Receiver<Vec<u8>>,
) -> Result<Option<Produced>> {
    let decoded: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(compressed),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(
            BufReader::with_capacity(CHUNK, compressed),
        )),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(CHUNK, compressed))
                .map_err(stream_err)?,
        ),
    };
    let mut plain = HashReader::new(decoded);
    loop {
        let mut buf = recycled.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
        let n = read_full(&mut plain, &mut buf).map_err(stream_err)?;
        if n == 0 {
            break;
        }
        if tx.send((buf, n)).is_err() {
            return Ok(None);
        }
        if n < CHUNK {
            break;
        }
    }
    // Make sure the decoder saw the true end of its input.
    let mut probe = [0u8; 1];
    if plain.read(&mut probe).map_err(stream_err)? != 0 {
        return Err(Error::Internal(
            "layer stream: decoder produced data after EOF".into(),
        ));
    }
    let trailing_zeros = plain.trailing_zeros;
    let diff_id = plain
        .finish()
        .0
        .ok_or_else(|| Error::Internal("uncompressed stream was not hashed".into()))?;
    Ok(Some(Produced {
        diff_id,
        trailing_zeros,
    }))
}

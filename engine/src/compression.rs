//! Message body compression: zstd, with a dictionary trained on the partition's own mail.
//!
//! Mail is many small, similar documents (header blocks, signatures, HTML boilerplate);
//! compressed one by one they share nothing. A dictionary trained on the first messages a
//! partition stores captures what they share, which both shrinks bodies and lets a fast
//! level do the work. The dictionary is logged as a record before any body uses it and is
//! carried in every checkpoint, so a body can always be decompressed.
//!
//! zstd's prepared dictionaries borrow their bytes for the life of the (de)compressor; the
//! partition keeps them for as long as the process runs, so they are leaked on purpose: one
//! per trained dictionary per process (a few hundred KiB at most).

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

use crate::error::FormatError;
use crate::mutation::BodyCodec;

#[derive(Clone, Debug)]
pub struct DictionaryConfig {
    /// Train a dictionary from the partition's first messages.
    pub enabled: bool,
    /// Messages sampled for training.
    pub samples: usize,
    /// Bytes of each message sampled (from its start: the headers matter most).
    pub sample_prefix: usize,
    /// The dictionary's size.
    pub size: usize,
}

impl Default for DictionaryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            // 500 samples of 4 KiB mail train as good a 64 KiB dictionary as 2000 (ratio 0.405
            // against 0.404, `benches/examples/zstd_probe.rs`) in a quarter of the time (0.3 s
            // against 1.2 s of a core on the 2-core benchmark machine).
            samples: 500,
            sample_prefix: 8 << 10,
            size: 64 << 10,
        }
    }
}

pub struct Compression {
    level: i32,
    cfg: DictionaryConfig,
    plain: Compressor<'static>,
    current: Option<(u32, Compressor<'static>)>,
    plain_decoder: Decompressor<'static>,
    decoders: HashMap<u32, Decompressor<'static>>,
    samples: Vec<Vec<u8>>,
    training: bool,
}

/// Bodies smaller than this are stored raw: compression would not pay for its framing.
pub(crate) const MIN_COMPRESS: usize = 64;

impl Compression {
    pub fn new(level: i32, mut cfg: DictionaryConfig) -> std::io::Result<Self> {
        // A larger dictionary could not be read back from its record.
        cfg.size = cfg
            .size
            .min(crate::format::names::MAX_DICTIONARY_SIZE as usize);
        Ok(Self {
            level,
            cfg,
            plain: Compressor::new(level)?,
            current: None,
            plain_decoder: Decompressor::new()?,
            decoders: HashMap::new(),
            samples: Vec::new(),
            training: false,
        })
    }

    /// Makes dictionary `id` usable; the highest id becomes the one new bodies use.
    pub fn add_dictionary(&mut self, id: u32, bytes: &[u8]) -> std::io::Result<()> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.decoders.entry(id) {
            let dd: &'static DecoderDictionary<'static> =
                Box::leak(Box::new(DecoderDictionary::copy(bytes)));
            slot.insert(Decompressor::with_prepared_dictionary(dd)?);
        }
        if self.current.as_ref().is_none_or(|(cur, _)| *cur < id) {
            let ed: &'static EncoderDictionary<'static> =
                Box::leak(Box::new(EncoderDictionary::copy(bytes, self.level)));
            self.current = Some((id, Compressor::with_prepared_dictionary(ed)?));
            self.samples = Vec::new();
        }
        Ok(())
    }

    pub fn has_dictionary(&self) -> bool {
        self.current.is_some()
    }

    /// Compresses a body: `(codec, dictionary id, stored bytes)`.
    pub fn compress(&mut self, body: &[u8]) -> std::io::Result<(BodyCodec, u32, Vec<u8>)> {
        if body.len() >= MIN_COMPRESS {
            let (codec, dict, c) = match &mut self.current {
                Some((id, c)) => (BodyCodec::ZstdDict, *id, c.compress(body)?),
                None => (BodyCodec::Zstd, 0, self.plain.compress(body)?),
            };
            if c.len() < body.len() {
                return Ok((codec, dict, c));
            }
        }
        Ok((BodyCodec::Raw, 0, body.to_vec()))
    }

    /// Decompresses a stored body into exactly `raw_len` bytes. `dictionaries` supplies a
    /// dictionary this instance has not prepared yet.
    pub fn decompress(
        &mut self,
        codec: BodyCodec,
        dict: u32,
        body: &[u8],
        raw_len: usize,
        dictionaries: &BTreeMap<u32, Rc<Vec<u8>>>,
    ) -> Result<Vec<u8>, FormatError> {
        let invalid = |detail: String| FormatError::Invalid {
            what: "compressed body",
            detail,
        };
        let out = match codec {
            BodyCodec::Raw => body.to_vec(),
            BodyCodec::Zstd => self
                .plain_decoder
                .decompress(body, raw_len)
                .map_err(|e| invalid(e.to_string()))?,
            BodyCodec::ZstdDict => {
                if !self.decoders.contains_key(&dict) {
                    let bytes = dictionaries
                        .get(&dict)
                        .ok_or_else(|| invalid(format!("dictionary {dict} is unknown")))?;
                    self.add_dictionary(dict, bytes)
                        .map_err(|e| invalid(e.to_string()))?;
                }
                let d = self.decoders.get_mut(&dict).expect("added above");
                d.decompress(body, raw_len)
                    .map_err(|e| invalid(e.to_string()))?
            }
        };
        if out.len() != raw_len {
            return Err(FormatError::Invalid {
                what: "body length",
                detail: format!("{} bytes, record says {raw_len}", out.len()),
            });
        }
        Ok(out)
    }

    /// Offers a stored body as a training sample. Returns the samples once there are
    /// enough to train, and then never again until a dictionary was added.
    pub fn offer_sample(&mut self, body: &[u8]) -> Option<Vec<Vec<u8>>> {
        if !self.cfg.enabled || self.current.is_some() || self.training || body.len() < MIN_COMPRESS
        {
            return None;
        }
        self.samples
            .push(body[..body.len().min(self.cfg.sample_prefix)].to_vec());
        if self.samples.len() >= self.cfg.samples {
            self.training = true;
            return Some(std::mem::take(&mut self.samples));
        }
        None
    }

    /// Training ended (with or without a dictionary).
    pub fn training_done(&mut self) {
        self.training = false;
    }

    pub fn dictionary_size(&self) -> usize {
        self.cfg.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(i: usize) -> Vec<u8> {
        format!(
            "Received: from mx.example.org by mail.example.net; Mon, {i} Nov 2026\r\nFrom: user{i}@example.org\r\nSubject: report {i}\r\n\r\nPlease find the quarterly report attached; the numbers for item {i} are final.\r\n"
        )
        .repeat(3)
        .into_bytes()
    }

    #[test]
    fn dictionary_round_trip_and_unknown_dictionary() {
        let cfg = DictionaryConfig {
            enabled: true,
            samples: 200,
            sample_prefix: 4096,
            size: 4096,
        };
        let mut c = Compression::new(1, cfg).unwrap();
        let mut samples = None;
        for i in 0..200 {
            samples = samples.or(c.offer_sample(&mail(i)));
        }
        let samples = samples.expect("enough samples");
        let dict = zstd::dict::from_samples(&samples, 4096).unwrap();
        let plain = c.compress(&mail(999)).unwrap();
        assert_eq!(plain.0, BodyCodec::Zstd);
        c.add_dictionary(1, &dict).unwrap();
        let with = c.compress(&mail(999)).unwrap();
        assert_eq!((with.0, with.1), (BodyCodec::ZstdDict, 1));
        assert!(with.2.len() < plain.2.len());
        let dicts: BTreeMap<u32, Rc<Vec<u8>>> = [(1, Rc::new(dict))].into();
        // A fresh instance (after a restart) decodes with the dictionary from the state.
        let mut fresh = Compression::new(1, DictionaryConfig::default()).unwrap();
        let out = fresh
            .decompress(with.0, 1, &with.2, mail(999).len(), &dicts)
            .unwrap();
        assert_eq!(out, mail(999));
        assert!(fresh
            .decompress(with.0, 7, &with.2, mail(999).len(), &dicts)
            .is_err());
        assert!(fresh
            .decompress(with.0, 1, &with.2, mail(999).len() + 1, &dicts)
            .is_err());
    }
}

//! How the SQLite ledger stores the JSON it keeps whole (event and timer
//! payloads, execution traces): short documents as text; longer ones as
//! zstd frames, compressed with a dictionary trained on the ledger's own
//! earlier documents once it has seen enough of them. One lead's documents
//! are much like another's (the same keys, the same pipeline configs, the
//! same shapes of provider answers), so with a dictionary a document costs
//! about what is particular to its lead: a fifth to a tenth of what it costs
//! compressed alone.
//!
//! A dictionary is written to the ledger (`dictionaries`) in a transaction
//! of the writer before the first document compressed with it, and is never
//! dropped; each zstd frame names its dictionary. Documents written by
//! older versions (raw deflate) still read.

use anyhow::{Context, Result};
use rusqlite::types::{Value as Stored, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use zstd::zstd_safe::{CCtx, CDict, DCtx, DDict};

/// Documents shorter than this stay JSON text.
const TEXT_BELOW: usize = 128;
/// First byte of a zstd document. No raw deflate stream starts with it
/// (block type 3 is reserved), so older documents stay readable.
const ZSTD_TAG: u8 = 0x07;
/// zstd's level: fast, and the dictionary does most of the work.
const LEVEL: i32 = 3;
/// Largest dictionary trained.
const DICTIONARY_BYTES: usize = 32 * 1024;
/// Documents a dictionary is trained on.
const SAMPLES: usize = 1_000;
/// A dictionary is trained again after this long (host clock, ms), so it
/// follows what the pipelines write as they change.
const RETRAIN_AFTER_MS: i64 = 7 * 86_400_000;
/// The most a stored document inflates to: far above the 1 MiB body limit.
const UNPACK_LIMIT: usize = 64 * 1024 * 1024;

/// Packs and unpacks one ledger's documents. Shared by its writer and
/// readers.
pub(super) struct Packer {
    /// The ledger's file, to read dictionaries another process trained.
    path: PathBuf,
    /// The dictionary documents are compressed with now.
    current: RwLock<Option<Arc<Compression>>>,
    /// Every dictionary met, by id.
    decoders: RwLock<HashMap<u32, Arc<DDict<'static>>>>,
    /// Documents kept to train the next dictionary on.
    samples: Mutex<Samples>,
    /// A trained dictionary the writer has yet to store.
    trained: Arc<Mutex<Option<Vec<u8>>>>,
    /// Compression and decompression contexts, kept for reuse.
    compressors: Mutex<Vec<CCtx<'static>>>,
    decompressors: Mutex<Vec<DCtx<'static>>>,
}

struct Compression {
    /// When it was trained (host clock, ms).
    trained_at: i64,
    dictionary: CDict<'static>,
}

#[derive(Default)]
struct Samples {
    documents: Vec<Vec<u8>>,
    /// A training is under way.
    training: bool,
}

impl Packer {
    /// The packer of the ledger at `path`, with its newest dictionary.
    pub(super) fn open(connection: &Connection, path: PathBuf) -> Result<Self> {
        let newest: Option<(u32, i64, Vec<u8>)> = connection
            .query_row("SELECT id, trained_at, bytes FROM dictionaries ORDER BY trained_at DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .context("reading the ledger's newest dictionary")?;
        let packer = Packer {
            path,
            current: RwLock::new(None),
            decoders: RwLock::new(HashMap::new()),
            samples: Mutex::new(Samples::default()),
            trained: Arc::new(Mutex::new(None)),
            compressors: Mutex::new(Vec::new()),
            decompressors: Mutex::new(Vec::new()),
        };
        if let Some((id, trained_at, bytes)) = newest {
            packer.adopt(id, trained_at, &bytes);
        }
        Ok(packer)
    }

    /// A document as stored: text when short, else a zstd frame (with the
    /// current dictionary, when there is one).
    pub(super) fn pack(&self, json: &str, now_ms: i64) -> Stored {
        if json.len() < TEXT_BELOW {
            return Stored::Text(json.to_string());
        }
        let current = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        self.sample(json, current.as_deref(), now_ms);
        let mut context = lock(&self.compressors).pop().unwrap_or_else(CCtx::create);
        // zstd writes from the start of the buffer: the tag goes in after.
        let mut frame = Vec::with_capacity(zstd::zstd_safe::compress_bound(json.len()) + 1);
        let written = match &current {
            Some(c) => context.compress_using_cdict(&mut frame, json.as_bytes(), &c.dictionary),
            None => context.compress(&mut frame, json.as_bytes(), LEVEL),
        };
        lock(&self.compressors).push(context);
        match written {
            Ok(_) => {
                frame.insert(0, ZSTD_TAG);
                Stored::Blob(frame)
            }
            // zstd refuses only what it cannot allocate for: keep the text.
            Err(_) => Stored::Text(json.to_string()),
        }
    }

    /// A stored document as JSON (`{}` for one that cannot be read).
    pub(super) fn unpack(&self, stored: ValueRef<'_>) -> serde_json::Value {
        let empty = || serde_json::Value::Object(serde_json::Map::new());
        let parsed = match stored {
            ValueRef::Text(text) => serde_json::from_slice(text),
            ValueRef::Blob([ZSTD_TAG, frame @ ..]) => match self.decompress(frame) {
                Some(json) => serde_json::from_slice(&json),
                None => return empty(),
            },
            // Written before zstd: raw deflate.
            ValueRef::Blob(packed) => match miniz_oxide::inflate::decompress_to_vec_with_limit(packed, UNPACK_LIMIT) {
                Ok(json) => serde_json::from_slice(&json),
                Err(_) => return empty(),
            },
            _ => return empty(),
        };
        parsed.unwrap_or_else(|_| empty())
    }

    fn decompress(&self, frame: &[u8]) -> Option<Vec<u8>> {
        let size = usize::try_from(zstd::zstd_safe::get_frame_content_size(frame).ok()??).ok()?;
        if size > UNPACK_LIMIT {
            return None;
        }
        let dictionary = match zstd::zstd_safe::get_dict_id_from_frame(frame) {
            Some(id) => Some(self.decoder(id.get())?),
            None => None,
        };
        let mut context = lock(&self.decompressors).pop().unwrap_or_else(DCtx::create);
        let mut json = Vec::with_capacity(size);
        let done = match &dictionary {
            Some(d) => context.decompress_using_ddict(&mut json, frame, d),
            None => context.decompress(&mut json, frame),
        };
        lock(&self.decompressors).push(context);
        done.ok().map(|_| json)
    }

    /// The dictionary `id`, read from the ledger the first time it is met.
    fn decoder(&self, id: u32) -> Option<Arc<DDict<'static>>> {
        if let Some(found) = self.decoders.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&id) {
            return Some(found.clone());
        }
        let connection = Connection::open_with_flags(&self.path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
        let bytes: Vec<u8> = connection
            .query_row("SELECT bytes FROM dictionaries WHERE id = ?1", params![id], |r| r.get(0))
            .optional()
            .ok()??;
        let decoder = Arc::new(DDict::create(&bytes));
        self.decoders.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, decoder.clone());
        Some(decoder)
    }

    /// Keeps `json` to train on, when a dictionary is wanted (none yet, or
    /// the current one is old), and starts the training once there are
    /// enough.
    fn sample(&self, json: &str, current: Option<&Compression>, now_ms: i64) {
        if current.is_some_and(|c| now_ms - c.trained_at < RETRAIN_AFTER_MS) {
            return;
        }
        let mut samples = lock(&self.samples);
        if samples.training {
            return;
        }
        samples.documents.push(json.as_bytes().to_vec());
        if samples.documents.len() < SAMPLES {
            return;
        }
        samples.training = true;
        let documents = std::mem::take(&mut samples.documents);
        drop(samples);
        let trained = Arc::downgrade(&self.trained);
        // Off every lead's path; the writer stores what comes of it.
        let _ =
            std::thread::Builder::new().name("handoff-dictionary".into()).spawn(
                move || match zstd::dict::from_samples(&documents, DICTIONARY_BYTES) {
                    Ok(dictionary) => {
                        if let Some(slot) = trained.upgrade() {
                            *lock(&slot) = Some(dictionary);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot train a compression dictionary for the ledger"),
                },
            );
    }

    /// Whether a trained dictionary waits to be stored.
    pub(super) fn has_trained(&self) -> bool {
        lock(&self.trained).is_some()
    }

    /// Stores a newly trained dictionary in the writer's open transaction;
    /// what to pass to [`Self::adopt`] once that commits.
    pub(super) fn store_trained(&self, connection: &Connection, now_ms: i64) -> Option<(u32, i64, Vec<u8>)> {
        let bytes = lock(&self.trained).take()?;
        let stored = zstd::zstd_safe::get_dict_id_from_dict(&bytes).map(std::num::NonZeroU32::get).and_then(|id| {
            connection
                .prepare_cached("INSERT OR IGNORE INTO dictionaries (id, trained_at, bytes) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute(params![id, now_ms, bytes]))
                .ok()
                .filter(|&inserted| inserted == 1)
                .map(|_| id)
        });
        if stored.is_none() {
            // Tried again on the next documents.
            lock(&self.samples).training = false;
        }
        stored.map(|id| (id, now_ms, bytes))
    }

    /// Uses dictionary `id` (`bytes`, trained at `trained_at`) from now on:
    /// once it is committed, so no document using it is written before it.
    pub(super) fn adopt(&self, id: u32, trained_at: i64, bytes: &[u8]) {
        let compression = Compression { trained_at, dictionary: CDict::create(bytes, LEVEL) };
        self.decoders
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, Arc::new(DDict::create(bytes)));
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(compression));
        lock(&self.samples).training = false;
        tracing::info!(dictionary = id, "the ledger compresses with a newly trained dictionary");
    }

    /// Forgets a stored dictionary whose transaction did not commit.
    pub(super) fn lost(&self) {
        lock(&self.samples).training = false;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

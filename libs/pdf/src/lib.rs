//! PDFs for every tool service, with lopdf alone (one crate to write, merge and read back):
//! text documents (A4, Helvetica: cover sheets, index pages), merging documents page by
//! page, and reading text back (for checks and tests).
//!
//! Every PDF read here may come from a tenant, so reading is bounded: each stream inflates to
//! at most [`MAX_DECOMPRESSED_BYTES`], a page's ancestor chain is walked with a visited set
//! and a depth cap (a `/Parent` loop is an unreadable file, not a spinning thread), merges
//! stop at [`MAX_MERGED_PAGES`], and [`run_bounded`] keeps the work off the async runtime,
//! a few at a time, under a deadline.
//!
//! Helvetica is one of the 14 standard fonts, so nothing is embedded; text is written in
//! WinAnsi (Latin-1), and other characters print as `?`.

use lopdf::{
    Dictionary, Document, Object, ObjectId, Stream,
    content::{Content, Operation},
    dictionary,
};

const WIDTH: i64 = 595;
const HEIGHT: i64 = 842;
const MARGIN: i64 = 50;
const SIZE: i64 = 10;
const LEADING: i64 = 14;
/// Characters per line at 10 pt Helvetica within the margins (average glyph width).
const WRAP: usize = 95;

/// A line of a text document: a heading or body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Title(String),
    Heading(String),
    Text(String),
    Blank,
}

fn winansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c as u32 {
            0x20..=0x7e | 0xa0..=0xff => c as u32 as u8,
            _ => b'?',
        })
        .collect()
}

fn wrap(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split(' ') {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > WRAP {
                out.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
            while line.chars().count() > WRAP {
                let head: String = line.chars().take(WRAP).collect();
                line = line.chars().skip(WRAP).collect();
                out.push(head);
            }
        }
        out.push(line);
    }
    out
}

/// Lays `lines` out on A4 pages and returns the PDF's bytes.
pub fn text_document(title: &str, lines: &[Line]) -> anyhow::Result<Vec<u8>> {
    // (font, size, text) per printed line, then split into pages.
    let mut printed: Vec<(&str, i64, String)> = Vec::new();
    for line in lines {
        match line {
            Line::Title(t) => printed.extend(wrap(t).into_iter().map(|l| ("F2", 14, l))),
            Line::Heading(t) => printed.extend(wrap(t).into_iter().map(|l| ("F2", SIZE, l))),
            Line::Text(t) => printed.extend(wrap(t).into_iter().map(|l| ("F1", SIZE, l))),
            Line::Blank => printed.push(("F1", SIZE, String::new())),
        }
    }
    let per_page = ((HEIGHT - 2 * MARGIN) / LEADING) as usize;
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = |name: &str| {
        dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => name,
            "Encoding" => "WinAnsiEncoding",
        }
    };
    let regular = doc.add_object(font("Helvetica"));
    let bold = doc.add_object(font("Helvetica-Bold"));
    let resources = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => regular, "F2" => bold },
    });
    let mut kids = Vec::new();
    let chunks: Vec<&[(&str, i64, String)]> = if printed.is_empty() {
        vec![&[]]
    } else {
        printed.chunks(per_page).collect()
    };
    for chunk in chunks {
        let mut ops = vec![
            Operation::new("BT", vec![]),
            Operation::new("TL", vec![LEADING.into()]),
            Operation::new("Td", vec![MARGIN.into(), (HEIGHT - MARGIN).into()]),
        ];
        for (font, size, text) in chunk {
            ops.push(Operation::new("Tf", vec![(*font).into(), (*size).into()]));
            ops.push(Operation::new(
                "Tj",
                vec![Object::String(winansi(text), lopdf::StringFormat::Literal)],
            ));
            ops.push(Operation::new("T*", vec![]));
        }
        ops.push(Operation::new("ET", vec![]));
        let content = Content { operations: ops };
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode()?));
        let page = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
            "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), WIDTH.into(), HEIGHT.into()],
        });
        kids.push(Object::Reference(page));
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }),
    );
    let info = doc.add_object(dictionary! {
        "Title" => Object::string_literal(winansi(title)),
        "Producer" => "Connectability",
    });
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    doc.trailer.set("Info", info);
    let mut out = Vec::new();
    doc.save_to(&mut out)?;
    Ok(out)
}

/// Keys a page inherits from its ancestors (PDF 32000-1, 7.7.3.4).
const INHERITED: [&[u8]; 4] = [b"Resources", b"MediaBox", b"CropBox", b"Rotate"];

/// Largest size one stream of a tenant's PDF may inflate to (a zip bomb stops here).
pub const MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;
/// Deepest page tree accepted (real documents nest a handful of levels).
pub const MAX_TREE_DEPTH: usize = 64;
/// Most pages one merged document may hold.
pub const MAX_MERGED_PAGES: usize = 20_000;

/// Parses a PDF with stream decompression bounded by [`MAX_DECOMPRESSED_BYTES`].
fn load(bytes: &[u8]) -> anyhow::Result<Document> {
    let options = lopdf::LoadOptions {
        max_decompressed_size: Some(MAX_DECOMPRESSED_BYTES),
        ..Default::default()
    };
    Ok(Document::load_mem_with_options(bytes, options)?)
}

/// Every page of `doc`, in order, with inherited attributes copied onto the page. A page
/// whose `/Parent` chain loops or nests deeper than [`MAX_TREE_DEPTH`] makes the document
/// unreadable.
fn pages_of(doc: &Document) -> anyhow::Result<Vec<(ObjectId, Dictionary)>> {
    let mut out = Vec::new();
    for (_, id) in doc.get_pages() {
        let Ok(page) = doc.get_dictionary(id) else {
            continue;
        };
        let mut page = page.clone();
        let mut parent = page.get(b"Parent").and_then(Object::as_reference).ok();
        let mut visited = std::collections::HashSet::from([id]);
        while let Some(pid) = parent {
            if !visited.insert(pid) {
                anyhow::bail!(
                    "the page tree loops: object {} {} is its own ancestor",
                    pid.0,
                    pid.1
                );
            }
            if visited.len() > MAX_TREE_DEPTH {
                anyhow::bail!("the page tree is deeper than {MAX_TREE_DEPTH} levels");
            }
            let Ok(node) = doc.get_dictionary(pid) else {
                break;
            };
            for key in INHERITED {
                if !page.has(key)
                    && let Ok(v) = node.get(key)
                {
                    page.set(key, v.clone());
                }
            }
            parent = node.get(b"Parent").and_then(Object::as_reference).ok();
        }
        out.push((id, page));
    }
    Ok(out)
}

/// One document with every page of `parts`, in order. Parts that do not parse (or whose page
/// tree loops, or that would take the document past [`MAX_MERGED_PAGES`]) are skipped and
/// their indexes returned, so the caller can say so.
pub fn merge(parts: &[Vec<u8>]) -> anyhow::Result<(Vec<u8>, Vec<usize>)> {
    let mut merged = Document::with_version("1.5");
    let pages_id = merged.new_object_id();
    let mut max_id = merged.max_id + 1;
    let mut kids = Vec::new();
    let mut unreadable = Vec::new();
    for (i, bytes) in parts.iter().enumerate() {
        let readable = load(bytes).and_then(|doc| Ok((pages_of(&doc)?.len(), doc)));
        let mut doc = match readable {
            Ok((pages, doc)) if pages > 0 && kids.len() + pages <= MAX_MERGED_PAGES => doc,
            _ => {
                unreadable.push(i);
                continue;
            }
        };
        doc.renumber_objects_with(max_id);
        max_id = doc.max_id + 1;
        // Page ids after renumbering (pages_of ran before, on the old ids).
        let pages = pages_of(&doc)?;
        let page_ids: Vec<ObjectId> = pages.iter().map(|(id, _)| *id).collect();
        for (id, object) in doc.objects {
            let kind = object.type_name().unwrap_or(b"");
            // The old catalogs and page trees are replaced by the merged ones.
            if kind == b"Catalog" || kind == b"Pages" || page_ids.contains(&id) {
                continue;
            }
            merged.objects.insert(id, object);
        }
        for (id, mut page) in pages {
            page.set("Parent", pages_id);
            merged.objects.insert(id, Object::Dictionary(page));
            kids.push(Object::Reference(id));
        }
    }
    let count = kids.len() as i64;
    merged.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }),
    );
    merged.max_id = max_id;
    let catalog = merged.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    merged.trailer.set("Root", catalog);
    merged.compress();
    let mut out = Vec::new();
    merged.save_to(&mut out)?;
    Ok((out, unreadable))
}

/// The text of every page (for tests and checks).
pub fn text_of(bytes: &[u8]) -> anyhow::Result<String> {
    let doc = load(bytes)?;
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    Ok(doc.extract_text(&pages)?)
}

/// How many pages a PDF has.
pub fn page_count(bytes: &[u8]) -> anyhow::Result<usize> {
    Ok(load(bytes)?.get_pages().len())
}

/// PDF work in flight in this process, at most; more waits its turn (or its deadline).
pub const MAX_CONCURRENT_PDF_WORK: usize = 2;

static PDF_WORK: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_CONCURRENT_PDF_WORK);

/// Why bounded PDF work did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum BoundedError {
    #[error("PDF work did not finish within {0:?}")]
    Deadline(std::time::Duration),
    #[error("{0}")]
    Failed(#[from] anyhow::Error),
}

/// Runs `work` (parsing or writing tenant PDFs) on the blocking pool, at most
/// [`MAX_CONCURRENT_PDF_WORK`] at a time, and gives up waiting after `deadline` (queueing
/// included). Synchronous code cannot be cancelled: a late job keeps its permit until it
/// ends, so runaway work slows later PDF work down instead of the whole runtime.
pub async fn run_bounded<T, F>(deadline: std::time::Duration, work: F) -> Result<T, BoundedError>
where
    T: Send + 'static,
    F: FnOnce() -> anyhow::Result<T> + Send + 'static,
{
    let run = async {
        let permit = PDF_WORK
            .acquire()
            .await
            .map_err(|e| BoundedError::Failed(e.into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| BoundedError::Failed(anyhow::anyhow!("PDF work panicked: {e}")))?
        .map_err(BoundedError::Failed)
    };
    tokio::time::timeout(deadline, run)
        .await
        .map_err(|_| BoundedError::Deadline(deadline))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-page PDF whose page's `/Parent` is a `/Pages` node that is its own parent.
    pub(crate) fn cyclic_parent_pdf() -> Vec<u8> {
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let loop_id = doc.new_object_id();
        let page = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => loop_id,
            "MediaBox" => vec![0.into(), 0.into(), 10.into(), 10.into()],
        });
        doc.objects.insert(
            loop_id,
            Object::Dictionary(dictionary! { "Type" => "Pages", "Parent" => loop_id, "Kids" => vec![page.into()], "Count" => 1 }),
        );
        doc.objects.insert(
            pages_id,
            Object::Dictionary(
                dictionary! { "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1 },
            ),
        );
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog);
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    #[test]
    fn a_looping_parent_chain_is_an_unreadable_part_not_a_spinning_thread() {
        let good = text_document("a", &[Line::Text("sheet A-101".into())]).unwrap();
        let (merged, unreadable) = merge(&[cyclic_parent_pdf(), good]).unwrap();
        assert_eq!(unreadable, vec![0]);
        assert_eq!(page_count(&merged).unwrap(), 1);
    }

    #[tokio::test]
    async fn bounded_work_answers_by_its_deadline_and_leaves_the_runtime_free() {
        let slow = run_bounded(std::time::Duration::from_millis(200), || {
            std::thread::sleep(std::time::Duration::from_secs(2));
            Ok(())
        });
        let started = std::time::Instant::now();
        assert!(matches!(slow.await, Err(BoundedError::Deadline(_))));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // The runtime still runs other work while the late job holds its permit.
        let quick = run_bounded(std::time::Duration::from_secs(5), || Ok(41 + 1)).await;
        assert_eq!(quick.unwrap(), 42);
    }

    #[test]
    fn text_comes_back_out_of_a_generated_document() {
        let long = "word ".repeat(400);
        let pdf = text_document(
            "RFI #7",
            &[
                Line::Title("RFI #7: Beam pocket at grid C4".into()),
                Line::Text("Answer: use detail 5/S-501. Größe ok.".into()),
                Line::Text(long),
            ],
        )
        .unwrap();
        let text = text_of(&pdf).unwrap();
        assert!(text.contains("RFI #7: Beam pocket at grid C4"), "{text}");
        assert!(text.contains("detail 5/S-501"), "{text}");
        assert!(text.contains("Größe"), "{text}");
    }

    #[test]
    fn merge_keeps_every_page_in_order_and_reports_unreadable_parts() {
        let a = text_document("a", &[Line::Text("first drawing".into())]).unwrap();
        let many: Vec<Line> = (0..150).map(|i| Line::Text(format!("line {i}"))).collect();
        let b = text_document("b", &many).unwrap();
        let (merged, unreadable) = merge(&[a, b"%PDF-1.4 not really".to_vec(), b]).unwrap();
        assert_eq!(unreadable, vec![1]);
        assert_eq!(page_count(&merged).unwrap(), 1 + 3);
        let text = text_of(&merged).unwrap();
        let first = text.find("first drawing").unwrap();
        let later = text.find("line 149").unwrap();
        assert!(first < later);
    }
}

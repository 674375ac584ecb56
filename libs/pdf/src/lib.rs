//! PDFs for every tool service, with lopdf alone (one crate to write, merge and read back):
//! text documents (A4, Helvetica: cover sheets, index pages), merging documents page by
//! page, and reading text back (for checks and tests).
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

/// Every page of `doc`, in order, with inherited attributes copied onto the page.
fn pages_of(doc: &Document) -> Vec<(ObjectId, Dictionary)> {
    let mut out = Vec::new();
    for (_, id) in doc.get_pages() {
        let Ok(page) = doc.get_dictionary(id) else {
            continue;
        };
        let mut page = page.clone();
        let mut parent = page.get(b"Parent").and_then(Object::as_reference).ok();
        while let Some(pid) = parent {
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
    out
}

/// One document with every page of `parts`, in order. Parts that do not parse are skipped
/// and their indexes returned, so the caller can say so.
pub fn merge(parts: &[Vec<u8>]) -> anyhow::Result<(Vec<u8>, Vec<usize>)> {
    let mut merged = Document::with_version("1.5");
    let pages_id = merged.new_object_id();
    let mut max_id = merged.max_id + 1;
    let mut kids = Vec::new();
    let mut unreadable = Vec::new();
    for (i, bytes) in parts.iter().enumerate() {
        let mut doc = match Document::load_mem(bytes) {
            Ok(doc) if !doc.get_pages().is_empty() => doc,
            _ => {
                unreadable.push(i);
                continue;
            }
        };
        doc.renumber_objects_with(max_id);
        max_id = doc.max_id + 1;
        let pages = pages_of(&doc);
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
    let doc = Document::load_mem(bytes)?;
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    Ok(doc.extract_text(&pages)?)
}

/// How many pages a PDF has.
pub fn page_count(bytes: &[u8]) -> anyhow::Result<usize> {
    Ok(Document::load_mem(bytes)?.get_pages().len())
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! Struct member offsets from DWARF (for `runtime.g`, `runtime.gobuf`, `runtime.m`, which
//! `offsets.rs` turns into a layout).
//!
//! `-ldflags=-w` (or `-s -w`) removes DWARF; the measured table in `offsets.rs` then takes
//! over.

use std::collections::HashMap;

use gimli::{AttributeValue, EndianSlice, LittleEndian, SectionId};

use super::elf::DebugSections;

/// Members by struct name, then member name.
pub(crate) type Members = HashMap<String, HashMap<String, u64>>;

/// Data member offsets of the named structures (first definition of each).
///
/// Reads unit headers and DIEs only: building full `gimli::Unit`s would also parse every
/// line program, which this does not need (and `.debug_line` is not even loaded).
pub(crate) fn struct_members(sections: &DebugSections, wanted: &[&str]) -> Option<Members> {
    let empty: &[u8] = &[];
    let load = |id: SectionId| -> Result<EndianSlice<'_, LittleEndian>, gimli::Error> {
        let data = sections.get(id.name()).map_or(empty, Vec::as_slice);
        Ok(EndianSlice::new(data, LittleEndian))
    };
    let dwarf = gimli::Dwarf::load(load).ok()?;
    let mut found = Members::new();
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(abbrevs) = dwarf.abbreviations(&header) else {
            continue;
        };
        scan_unit(&dwarf, &header, &abbrevs, wanted, &mut found);
        if found.len() == wanted.len() {
            break;
        }
    }
    (!found.is_empty()).then_some(found)
}

fn scan_unit<R: gimli::Reader>(
    dwarf: &gimli::Dwarf<R>,
    header: &gimli::UnitHeader<R>,
    abbrevs: &gimli::Abbreviations,
    wanted: &[&str],
    found: &mut Members,
) {
    let mut entries = header.entries(abbrevs);
    // (struct name, depth of its DIE) while inside a wanted struct.
    let mut current: Option<(String, isize)> = None;
    while let Ok(Some(entry)) = entries.next_dfs() {
        let depth = entry.depth();
        if current.as_ref().is_some_and(|(_, d)| depth <= *d) {
            current = None;
        }
        // Go writes names inline (DW_FORM_string); C units of a cgo binary use .debug_str.
        let name = || -> Option<String> {
            let s = match entry.attr_value(gimli::DW_AT_name)? {
                AttributeValue::String(s) => s,
                AttributeValue::DebugStrRef(off) => dwarf.debug_str.get_str(off).ok()?,
                _ => return None,
            };
            Some(s.to_string_lossy().ok()?.into_owned())
        };
        match entry.tag() {
            gimli::DW_TAG_structure_type => {
                if let Some(n) = name() {
                    if wanted.contains(&n.as_str()) && !found.contains_key(&n) {
                        current = Some((n, depth));
                    }
                }
            }
            gimli::DW_TAG_member => {
                let Some((struct_name, struct_depth)) = &current else {
                    continue;
                };
                if depth != struct_depth + 1 {
                    continue;
                }
                let offset = match entry.attr_value(gimli::DW_AT_data_member_location) {
                    Some(AttributeValue::Sdata(v)) => u64::try_from(v).ok(),
                    Some(v) => v.udata_value(),
                    None => None,
                };
                if let (Some(member), Some(offset)) = (name(), offset) {
                    found
                        .entry(struct_name.clone())
                        .or_default()
                        .insert(member, offset);
                }
            }
            _ => {}
        }
    }
}

/// How a named Go type is declared in DWARF: as a struct, or only as a typedef of another
/// type (a map, for instance). `None` when no DIE has that name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeShape {
    Struct,
    Other,
}

/// The shape of the type called `name` (a struct wins over a typedef of the same name, which
/// Go emits next to it). Scans until a struct of that name is found.
pub(crate) fn type_shape(sections: &DebugSections, name: &str) -> Option<TypeShape> {
    let empty: &[u8] = &[];
    let load = |id: SectionId| -> Result<EndianSlice<'_, LittleEndian>, gimli::Error> {
        let data = sections.get(id.name()).map_or(empty, Vec::as_slice);
        Ok(EndianSlice::new(data, LittleEndian))
    };
    let dwarf = gimli::Dwarf::load(load).ok()?;
    let mut shape = None;
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Ok(abbrevs) = dwarf.abbreviations(&header) else {
            continue;
        };
        let mut entries = header.entries(&abbrevs);
        while let Ok(Some(entry)) = entries.next_dfs() {
            let tag = entry.tag();
            if tag != gimli::DW_TAG_structure_type && tag != gimli::DW_TAG_typedef {
                continue;
            }
            let named = match entry.attr_value(gimli::DW_AT_name) {
                Some(AttributeValue::String(s)) => s.slice() == name.as_bytes(),
                _ => false,
            };
            if !named {
                continue;
            }
            if tag == gimli::DW_TAG_structure_type {
                return Some(TypeShape::Struct);
            }
            shape = Some(TypeShape::Other);
        }
    }
    shape
}

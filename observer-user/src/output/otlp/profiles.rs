//! Blocked-time deltas as OTLP profiles (signal `v1development`, the layout of
//! opentelemetry-proto 1.45 / the Rust crate 0.33: one shared `ProfilesDictionary` per request,
//! one sample type per `Profile`).
//!
//! One `ResourceProfiles` per process (resource attributes as the logs'), scope `observer`, and
//! in it up to four profiles over the same samples, the sample types of the pprof output:
//! `delay/nanoseconds` and `contentions/count` (blocked time: lock waits, uninterruptible sleep),
//! and `idle_delay/nanoseconds` and `idle_waits/count` when idle time was gathered. Every sample
//! is one merged stack; its attributes are `thread.name`, `observer.category` (`lock`, `kernel`,
//! `idle`) and `observer.wait_reason` (an innermost pseudo-frame such as `[futex]`, dropped from
//! the stack as in pprof). Locations carry the frames innermost first: frames inlined at one
//! address are one location with one line each; a frame with a normalized address has its
//! module as mapping and its file offset as address.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::profiles::v1development::{
    Function, KeyValueAndUnit, Line, Link, Location, Mapping, Profile, ProfilesDictionary,
    ResourceProfiles, Sample, ScopeProfiles, Stack, ValueType,
};

use super::{resource, scope, str_value, ProcessIdentity};
use crate::output::pprof::{parse_frame, wait_reason};
use crate::output::profile::{PidDelta, StackEntry};
use crate::proc::normaddr::Module;
use crate::stacks::frame::{machine_frames, Frame};

/// The interval the profiles cover.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Start, nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    pub duration_nano: u64,
}

/// One process's delta with what the resource needs.
pub struct ProcessProfile {
    pub delta: PidDelta,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
}

/// The export request for the deltas of one interval; `None` when nothing was gathered.
pub fn request(
    processes: &[ProcessProfile],
    host: &str,
    window: Window,
) -> Option<ExportProfilesServiceRequest> {
    let mut d = Dictionary::new();
    let mut resource_profiles = Vec::new();
    for p in processes {
        let entries = p.delta.profile.entries();
        if entries.is_empty() {
            continue;
        }
        let samples: Vec<(Sample, &StackEntry)> =
            entries.iter().map(|e| (d.sample(e), e)).collect();
        let mut profiles = Vec::new();
        for (idle, ty, unit, value) in [
            (
                false,
                "delay",
                "nanoseconds",
                weight as fn(&StackEntry) -> u64,
            ),
            (false, "contentions", "count", count),
            (true, "idle_delay", "nanoseconds", weight),
            (true, "idle_waits", "count", count),
        ] {
            let chosen: Vec<Sample> = samples
                .iter()
                .filter(|(_, e)| e.category.is_idle() == idle)
                .map(|(s, e)| Sample {
                    values: vec![to_i64(value(e))],
                    ..s.clone()
                })
                .collect();
            if chosen.is_empty() {
                continue;
            }
            profiles.push(Profile {
                sample_type: Some(d.value_type(ty, unit)),
                samples: chosen,
                time_unix_nano: window.start_unix_nano,
                duration_nano: window.duration_nano,
                period_type: Some(d.value_type("contentions", "count")),
                period: 1,
                ..Default::default()
            });
        }
        let id = ProcessIdentity {
            pid: p.delta.pid,
            executable: super::logs::bounded(&p.delta.process),
            container_id: p.container_id.clone(),
            pod_uid: p.pod_uid.clone(),
        };
        resource_profiles.push(ResourceProfiles {
            resource: Some(resource(host, &id)),
            scope_profiles: vec![ScopeProfiles {
                scope: Some(scope()),
                profiles,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        });
    }
    (!resource_profiles.is_empty()).then(|| ExportProfilesServiceRequest {
        resource_profiles,
        dictionary: Some(d.finish()),
    })
}

fn weight(e: &StackEntry) -> u64 {
    e.weight_ns
}

fn count(e: &StackEntry) -> u64 {
    e.count
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_i32(v: usize) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// The shared tables; index 0 of each is its zero value, as the proto requires.
struct Dictionary {
    strings: Vec<String>,
    string_ids: HashMap<String, i32>,
    mappings: Vec<Mapping>,
    mapping_ids: HashMap<Arc<Module>, i32>,
    locations: Vec<Location>,
    location_ids: HashMap<(i32, u64, Vec<Arc<str>>), i32>,
    functions: Vec<Function>,
    function_ids: HashMap<(i32, i32), i32>,
    attributes: Vec<KeyValueAndUnit>,
    attribute_ids: HashMap<(i32, String), i32>,
    stacks: Vec<Stack>,
    stack_ids: HashMap<Vec<i32>, i32>,
}

impl Dictionary {
    fn new() -> Self {
        let mut d = Dictionary {
            strings: Vec::new(),
            string_ids: HashMap::new(),
            mappings: vec![Mapping::default()],
            mapping_ids: HashMap::new(),
            locations: vec![Location::default()],
            location_ids: HashMap::new(),
            functions: vec![Function::default()],
            function_ids: HashMap::new(),
            attributes: vec![KeyValueAndUnit::default()],
            attribute_ids: HashMap::new(),
            stacks: vec![Stack::default()],
            stack_ids: HashMap::new(),
        };
        d.string("");
        d
    }

    fn finish(self) -> ProfilesDictionary {
        ProfilesDictionary {
            mapping_table: self.mappings,
            location_table: self.locations,
            function_table: self.functions,
            link_table: vec![Link::default()],
            string_table: self.strings,
            attribute_table: self.attributes,
            stack_table: self.stacks,
        }
    }

    fn string(&mut self, s: &str) -> i32 {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = to_i32(self.strings.len());
        self.strings.push(s.to_string());
        self.string_ids.insert(s.to_string(), id);
        id
    }

    fn value_type(&mut self, ty: &str, unit: &str) -> ValueType {
        ValueType {
            type_strindex: self.string(ty),
            unit_strindex: self.string(unit),
        }
    }

    fn attribute(&mut self, key: &str, value: &str) -> i32 {
        let key_strindex = self.string(key);
        if let Some(&id) = self.attribute_ids.get(&(key_strindex, value.to_string())) {
            return id;
        }
        let id = to_i32(self.attributes.len());
        self.attributes.push(KeyValueAndUnit {
            key_strindex,
            value: Some(str_value(value)),
            unit_strindex: 0,
        });
        self.attribute_ids
            .insert((key_strindex, value.to_string()), id);
        id
    }

    /// The sample of `entry`, without values.
    fn sample(&mut self, entry: &StackEntry) -> Sample {
        let mut frames: &[Frame] = &entry.frames;
        let mut attribute_indices = vec![
            self.attribute("thread.name", &entry.thread),
            self.attribute("observer.category", entry.category.as_str()),
        ];
        let reason = frames
            .first()
            .filter(|f| f.addr.is_none())
            .and_then(|f| wait_reason(&f.name));
        if let Some(reason) = reason {
            attribute_indices.push(self.attribute("observer.wait_reason", reason));
            if frames.len() > 1 {
                frames = &frames[1..];
            }
        }
        let location_indices: Vec<i32> = if frames.is_empty() {
            vec![self.location(&[Frame::named("[unknown]")])]
        } else {
            machine_frames(frames)
                .map(|run| self.location(run))
                .collect()
        };
        let stack_index = match self.stack_ids.get(&location_indices) {
            Some(&id) => id,
            None => {
                let id = to_i32(self.stacks.len());
                self.stacks.push(Stack {
                    location_indices: location_indices.clone(),
                });
                self.stack_ids.insert(location_indices, id);
                id
            }
        };
        Sample {
            stack_index,
            attribute_indices,
            ..Default::default()
        }
    }

    fn mapping(&mut self, module: &Arc<Module>) -> i32 {
        if let Some(&id) = self.mapping_ids.get(module) {
            return id;
        }
        let filename_strindex = self.string(&module.path);
        let mut attribute_indices = Vec::new();
        if let Some(build_id) = &module.build_id {
            attribute_indices.push(self.attribute("process.executable.build_id.gnu", build_id));
        }
        let id = to_i32(self.mappings.len());
        // Addresses are file offsets (the process's load addresses are not kept): the mapping
        // covers the whole file from offset 0.
        self.mappings.push(Mapping {
            memory_start: 0,
            memory_limit: u64::MAX,
            file_offset: 0,
            filename_strindex,
            attribute_indices,
        });
        self.mapping_ids.insert(Arc::clone(module), id);
        id
    }

    fn function(&mut self, name: &str, file: &str) -> i32 {
        let key = (self.string(name), self.string(file));
        if let Some(&id) = self.function_ids.get(&key) {
            return id;
        }
        let id = to_i32(self.functions.len());
        self.functions.push(Function {
            name_strindex: key.0,
            system_name_strindex: key.0,
            filename_strindex: key.1,
            start_line: 0,
        });
        self.function_ids.insert(key, id);
        id
    }

    fn location(&mut self, run: &[Frame]) -> i32 {
        let addr = run.first().and_then(|f| f.addr.as_ref());
        let (mapping_index, address) = match addr {
            Some(a) => (self.mapping(&a.module), a.file_offset),
            None => (0, 0),
        };
        let key = (
            mapping_index,
            address,
            run.iter().map(|f| Arc::clone(&f.name)).collect::<Vec<_>>(),
        );
        if let Some(&id) = self.location_ids.get(&key) {
            return id;
        }
        let lines = run
            .iter()
            .map(|f| {
                let (name, file, line) = parse_frame(&f.name);
                Line {
                    function_index: self.function(name, file),
                    line,
                    column: 0,
                }
            })
            .collect();
        let id = to_i32(self.locations.len());
        self.locations.push(Location {
            mapping_index,
            address,
            lines,
            attribute_indices: Vec::new(),
        });
        self.location_ids.insert(key, id);
        id
    }
}

/// Only for tests: an attribute value as text.
#[cfg(test)]
fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::profile::{Category, PidDeltas};
    use crate::stacks::frame;

    fn names(f: &[&str]) -> Vec<Frame> {
        frame::from_names(&f.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn deltas() -> Vec<ProcessProfile> {
        let mut d = PidDeltas::new(100);
        let lock = names(&[
            "[lock: pthread_mutex]",
            "transfer (bank.c:14)",
            "main (bank.c:30)",
        ]);
        d.add_many_frames(
            42,
            Category::Lock,
            "bank",
            "worker",
            &lock,
            3_000_000_000,
            2,
        );
        d.add_many_frames(
            42,
            Category::Idle,
            "bank",
            "pool",
            &names(&["[futex]", "wait"]),
            9,
            1,
        );
        d.add_many_frames(
            7,
            Category::Kernel,
            "db",
            "io",
            &names(&["fsync_log"]),
            5,
            1,
        );
        d.take()
            .0
            .into_iter()
            .map(|delta| ProcessProfile {
                container_id: (delta.pid == 42).then(|| "c0ffee".repeat(10)),
                pod_uid: None,
                delta,
            })
            .collect()
    }

    #[test]
    fn deltas_become_profiles_per_process_with_a_shared_dictionary() {
        let window = Window {
            start_unix_nano: 1_000,
            duration_nano: 60_000_000_000,
        };
        let req = request(&deltas(), "host1", window).expect("something to send");
        let d = req.dictionary.as_ref().unwrap();
        // Zero values first, as the proto requires.
        assert_eq!(d.string_table[0], "");
        assert_eq!(d.stack_table[0], Stack::default());
        assert_eq!(d.location_table[0], Location::default());
        assert_eq!(d.function_table[0], Function::default());
        assert_eq!(d.mapping_table[0], Mapping::default());
        assert_eq!(d.attribute_table[0], KeyValueAndUnit::default());
        assert_eq!(d.link_table.len(), 1);

        assert_eq!(req.resource_profiles.len(), 2);
        let bank = &req.resource_profiles[1];
        let res = bank.resource.as_ref().unwrap();
        let pid = res
            .attributes
            .iter()
            .find(|a| a.key == "process.pid")
            .unwrap();
        assert_eq!(text(&pid.value), "Some(IntValue(42))");
        let cid = res
            .attributes
            .iter()
            .find(|a| a.key == "container.id")
            .unwrap();
        assert_eq!(text(&cid.value), "c0ffee".repeat(10));
        let profiles = &bank.scope_profiles[0].profiles;
        let types: Vec<(&str, &str)> = profiles
            .iter()
            .map(|p| {
                let t = p.sample_type.unwrap();
                (
                    d.string_table[t.type_strindex as usize].as_str(),
                    d.string_table[t.unit_strindex as usize].as_str(),
                )
            })
            .collect();
        assert_eq!(
            types,
            vec![
                ("delay", "nanoseconds"),
                ("contentions", "count"),
                ("idle_delay", "nanoseconds"),
                ("idle_waits", "count")
            ]
        );
        assert_eq!(profiles[0].duration_nano, 60_000_000_000);
        let s = &profiles[0].samples[0];
        assert_eq!(s.values, vec![3_000_000_000]);
        assert_eq!(profiles[1].samples[0].values, vec![2]);
        // The stack, innermost first, without its wait-reason pseudo-frame.
        let funcs: Vec<&str> = d.stack_table[s.stack_index as usize]
            .location_indices
            .iter()
            .map(|&l| {
                let f = d.location_table[l as usize].lines[0].function_index;
                d.string_table[d.function_table[f as usize].name_strindex as usize].as_str()
            })
            .collect();
        assert_eq!(funcs, vec!["transfer", "main"]);
        let line = &d.location_table
            [d.stack_table[s.stack_index as usize].location_indices[0] as usize]
            .lines[0];
        assert_eq!(line.line, 14);
        let attrs: Vec<(String, String)> = s
            .attribute_indices
            .iter()
            .map(|&i| {
                let a = &d.attribute_table[i as usize];
                (
                    d.string_table[a.key_strindex as usize].clone(),
                    text(&a.value),
                )
            })
            .collect();
        assert!(attrs.contains(&("thread.name".into(), "worker".into())));
        assert!(attrs.contains(&("observer.category".into(), "lock".into())));
        assert!(attrs.contains(&("observer.wait_reason".into(), "lock: pthread_mutex".into())));
        // The kernel-only process has blocked profiles only.
        assert_eq!(req.resource_profiles[0].scope_profiles[0].profiles.len(), 2);
    }

    #[test]
    fn nothing_gathered_sends_nothing() {
        let w = Window {
            start_unix_nano: 0,
            duration_nano: 0,
        };
        assert!(request(&[], "h", w).is_none());
    }
}

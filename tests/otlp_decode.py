#!/usr/bin/env python3
"""Decodes what observer sent to an OTLP/HTTP endpoint with the official schema (PyPI
opentelemetry-proto) and prints it as JSON, for tests/tests/e2e_otlp.rs.

usage: otlp_decode.py logs|profiles FILE...   (each FILE one gzipped request body)
Exits 3 when the opentelemetry-proto package is missing."""
import gzip
import json
import sys

try:
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
        ExportProfilesServiceRequest,
    )
except ImportError as e:
    print(f"otlp_decode: the PyPI package opentelemetry-proto is missing ({e}); run `cargo xtask setup`",
          file=sys.stderr)
    sys.exit(3)


def value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def attrs(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


def logs(bodies):
    out = []
    for body in bodies:
        req = ExportLogsServiceRequest()
        req.ParseFromString(body)
        for rl in req.resource_logs:
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    out.append({
                        "resource": attrs(rl.resource.attributes),
                        "scope": sl.scope.name,
                        "time_unix_nano": r.time_unix_nano,
                        "severity_number": r.severity_number,
                        "severity_text": r.severity_text,
                        "event_name": r.event_name,
                        "body": value(r.body),
                        "attributes": attrs(r.attributes),
                    })
    return out


def profiles(bodies):
    out = []
    for body in bodies:
        req = ExportProfilesServiceRequest()
        req.ParseFromString(body)
        d = req.dictionary
        s = d.string_table
        for rp in req.resource_profiles:
            for sp in rp.scope_profiles:
                for p in sp.profiles:
                    samples = []
                    for smp in p.samples:
                        funcs = []
                        for li in d.stack_table[smp.stack_index].location_indices:
                            loc = d.location_table[li]
                            for line in loc.lines:
                                fn = d.function_table[line.function_index]
                                funcs.append(s[fn.name_strindex])
                        sattrs = {}
                        for ai in smp.attribute_indices:
                            a = d.attribute_table[ai]
                            sattrs[s[a.key_strindex]] = value(a.value)
                        samples.append({"values": list(smp.values), "functions": funcs,
                                        "attributes": sattrs})
                    out.append({
                        "resource": attrs(rp.resource.attributes),
                        "scope": sp.scope.name,
                        "sample_type": [s[p.sample_type.type_strindex], s[p.sample_type.unit_strindex]],
                        "time_unix_nano": p.time_unix_nano,
                        "duration_nano": p.duration_nano,
                        "samples": samples,
                    })
    return out


def main():
    what, files = sys.argv[1], sys.argv[2:]
    if what not in ("logs", "profiles"):
        sys.exit(f"otlp_decode: first argument must be logs or profiles, not {what!r}")
    bodies = []
    for f in files:
        with open(f, "rb") as fh:
            bodies.append(gzip.decompress(fh.read()))
    json.dump(logs(bodies) if what == "logs" else profiles(bodies), sys.stdout)


main()

#!/usr/bin/env python3
"""Independent decode of a capture with tshark, one JSON line per OPC UA message.

Usage: tshark_messages.py FILE.pcapng PORT [PORT ...]

Runs `tshark -T pdml` with the OPC UA dissector on the given server ports and prints, per
message, the fields the cross-check compares with `uatap analyze --messages --json`. tshark
reassembles C chunks into the following F chunk and shows the service fields only there, so C
chunks are folded into the next F chunk with the same RequestId (counted in "chunks").
"""
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

FIELDS = {
    "opcua.transport.type": "msg_type",
    "opcua.transport.chunk": "chunk",
    "opcua.transport.scid": "channel_id",
    "opcua.security.tokenid": "token_id",
    "opcua.security.seq": "sequence_number",
    "opcua.security.rqid": "request_id",
    "opcua.servicenodeid.numeric": "type_id",
    "opcua.RequestHandle": "request_handle",
    "opcua.ServiceResult": "service_result",
}
INTS = {"channel_id", "token_id", "sequence_number", "request_id", "type_id", "request_handle"}
NOTIFICATION_RESPONSES = {829, 835}  # PublishResponse, RepublishResponse


def main():
    path, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
    tshark = os.environ.get("UATAP_TSHARK", "tshark")
    cmd = [tshark, "-r", path, "-T", "pdml", "-o", "tcp.desegment_tcp_streams:TRUE"]
    for p in ports:
        cmd += ["-d", f"tcp.port=={p},opcua"]
    proc = subprocess.run(cmd, capture_output=True, check=True)
    root = ET.fromstring(proc.stdout)
    pending = {}  # (dir, request_id) -> chunks seen before the F chunk
    for packet in root.iter("packet"):
        srcport = None
        for proto in packet.iter("proto"):
            if proto.get("name") == "tcp":
                for f in proto.iter("field"):
                    if f.get("name") == "tcp.srcport":
                        srcport = int(f.get("show"))
        for proto in packet.iter("proto"):
            if proto.get("name") != "opcua":
                continue
            msg = {"dir": "s2c" if srcport in ports else "c2s", "notification_sequence_number": None}
            seqs = []
            for f in proto.iter("field"):
                name = f.get("name")
                key = FIELDS.get(name)
                if key and key not in msg:
                    v = f.get("show")
                    msg[key] = int(v) if key in INTS else v
                elif name == "opcua.SequenceNumber":
                    seqs.append(int(f.get("show")))
            for k in FIELDS.values():
                msg.setdefault(k, None)
            if msg["service_result"] is not None:
                msg["service_result"] = "0x%08X" % int(msg["service_result"], 16)
            key = (msg["dir"], msg["request_id"])
            if msg["chunk"] == "C":
                pending[key] = pending.get(key, 0) + 1
                continue
            msg["chunks"] = pending.pop(key, 0) + 1
            if msg["type_id"] in NOTIFICATION_RESPONSES and seqs:
                msg["notification_sequence_number"] = seqs[0]
            print(json.dumps(msg))


if __name__ == "__main__":
    main()

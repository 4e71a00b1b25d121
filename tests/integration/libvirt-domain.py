#!/usr/bin/env python3
"""One replica's libvirt domain XML, made from docs/examples/plover-domain.xml.

usage: libvirt-domain.py EXAMPLE --name NAME --id N --peers P --state FILE
           --secret-file FILE --emulator QEMU --kernel K --initrd I
           --cmdline C --serial FILE [--memory MIB] [--type qemu|kvm]
           [--tap DEV] [--mac MAC] [--disk IMAGE --disk-format FMT | --no-disk]

Prints the XML. The test starts from the example an operator reads, so
that the example is the one that runs: it changes only what differs on a
test host (the guest boots its kernel directly, TCG, paths under the
test's directory) and keeps the rest, the NIC and the plover arguments'
shape above all.
"""
import argparse
import sys
import xml.etree.ElementTree as ET

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("example")
    for opt in ("name", "id", "peers", "state", "secret-file", "emulator",
                "kernel", "initrd", "cmdline", "serial"):
        ap.add_argument("--" + opt, required=True)
    ap.add_argument("--memory", default="256")
    ap.add_argument("--type", default="qemu")
    ap.add_argument("--tap", default="tap0")
    ap.add_argument("--mac")
    ap.add_argument("--disk")
    ap.add_argument("--disk-format", default="raw")
    ap.add_argument("--no-disk", action="store_true")
    a = ap.parse_args()

    ET.register_namespace("qemu", QEMU_NS)
    tree = ET.parse(a.example)
    dom = tree.getroot()
    dom.set("type", a.type)
    dom.find("name").text = a.name
    mem = dom.find("memory")
    mem.set("unit", "MiB")
    mem.text = a.memory

    os_el = dom.find("os")
    for boot in os_el.findall("boot"):
        os_el.remove(boot)
    for tag, val in (("kernel", a.kernel), ("initrd", a.initrd),
                     ("cmdline", a.cmdline)):
        ET.SubElement(os_el, tag).text = val

    dev = dom.find("devices")
    dev.find("emulator").text = a.emulator
    for disk in dev.findall("disk"):
        if a.no_disk or not a.disk:
            dev.remove(disk)
        else:
            disk.find("driver").set("type", a.disk_format)
            disk.find("source").set("file", a.disk)
    nic = dev.find("interface")
    nic.find("target").set("dev", a.tap)
    if a.mac:
        nic.find("mac").set("address", a.mac)
    # The console goes to a file the test reads, not to a pty.
    for tag in ("serial", "console"):
        for el in dev.findall(tag):
            dev.remove(el)
    serial = ET.SubElement(dev, "serial", type="file")
    ET.SubElement(serial, "source", path=a.serial)

    args = dom.find("{%s}commandline" % QEMU_NS).findall("{%s}arg" % QEMU_NS)
    for i, arg in enumerate(args):
        v = arg.get("value")
        if v.startswith("secret,"):
            arg.set("value", "secret,id=plvsec,file=" + a.secret_file)
        elif i > 0 and args[i - 1].get("value") == "-plover":
            fields = split_plover(v)
            fields["id"] = a.id
            fields["peers"] = a.peers
            fields["state"] = a.state
            arg.set("value", ",".join("%s=%s" % kv for kv in fields.items()))
    tree.write(sys.stdout, encoding="unicode")
    print()
    return 0


def split_plover(v):
    """-plover's fields; peers' value itself holds commas."""
    fields, key = {}, None
    for part in v.split(","):
        if "=" in part:
            key, val = part.split("=", 1)
            fields[key] = val
        else:
            fields[key] += "," + part
    return fields


if __name__ == "__main__":
    sys.exit(main())

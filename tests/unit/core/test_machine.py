"""The CPU a figure names: model name, family and model numbers, vector extensions (issue #29: "AMD EPYC" is both
a Zen 3 with AVX2 only and a Zen 4 with AVX-512, and latency moves twofold between them)."""

from __future__ import annotations

from defectlens.core import machine

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse sse2 avx fma avx2 bmi2

processor\t: 1
cpu family\t: 99
model\t\t: 99
flags\t\t: avx512f
"""
ZEN4 = ZEN3.replace("model\t\t: 1\n", "model\t\t: 17\n", 1).replace("avx2 bmi2", "avx2 avx512f avx512_vnni avx512_bf16")


def test_the_first_processor_is_read():
    assert machine.cpu_features(ZEN3) == {"family": 25, "model": 1, "stepping": 1, "vector": ["avx2"]}


def test_the_vector_extensions_are_listed_widest_first():
    assert machine.cpu_features(ZEN4)["vector"] == ["avx512_bf16", "avx512_vnni", "avx512f", "avx2"]


def test_a_cpu_without_avx2_says_so():
    old = ZEN3.replace("avx2 ", "")
    label = machine.machine_label({"cpu": "Old", "cpu_features": machine.cpu_features(old)})
    assert label == "Old (family 25 model 1, no avx2)"


def test_no_cpuinfo_fields_give_nothing():
    assert machine.cpu_features("") == {}


def test_two_generations_of_one_model_name_are_told_apart():
    labels = {
        machine.machine_label({"cpu": "AMD EPYC", "cpu_features": machine.cpu_features(text)}) for text in (ZEN3, ZEN4)
    }
    assert labels == {"AMD EPYC (family 25 model 1, avx2)", "AMD EPYC (family 25 model 17, avx512_bf16)"}


def test_a_record_from_before_the_features_keeps_its_model_name():
    assert machine.machine_label({"cpu": "Intel(R) Xeon(R) Processor"}) == "Intel(R) Xeon(R) Processor"


def test_every_machine_record_carries_them():
    record = machine.describe_machine()
    assert record["cpu_features"] == machine.cpu_features()
    assert machine.cpu_label().startswith(record["cpu"])

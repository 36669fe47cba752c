"""Rewrite a GGUF file with every quantised tensor widened to F16 (the rest unchanged).

For benchmarks of half-precision weights against a peer that reads the same file, e.g. the default
model's Q4_1 blocks as an F16 GGUF:

    python3 scripts/widen_gguf.py SmolLM2-135M-Instruct.Q4_1.gguf /tmp/SmolLM2-135M-Instruct.F16.gguf

Values are dequantised by the `gguf` package (the format's own definition) and rounded to f16, so
the new file is a close copy of the model, not the same one: a block's scale times its quant is
not always an f16 number. Needs `pip install gguf numpy`.
"""

import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize

QUANTISED = {GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1}
MOSTLY_F16 = 1  # llama.cpp's file type for "mostly F16"


def field_value(field):
    """The value of a metadata field, as GGUFWriter.add_key_value takes it."""
    kind = field.types[0]
    if kind == GGUFValueType.ARRAY:
        sub = field.types[1]
        if sub == GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data], sub
        return [field.parts[i][0].item() for i in field.data], sub
    if kind == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8"), None
    return field.parts[field.data[0]][0].item(), None


def main(src, dst):
    reader = GGUFReader(src)
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode("utf-8")
    writer = GGUFWriter(dst, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value, sub = field_value(field)
        if name == "general.file_type":
            value = MOSTLY_F16
        writer.add_key_value(name, value, field.types[0], sub_type=sub)
    widened = 0
    for t in reader.tensors:
        if t.tensor_type in QUANTISED:
            data = dequantize(t.data, t.tensor_type).astype(np.float16)
            widened += 1
        else:
            data = np.array(t.data)
        writer.add_tensor(t.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"{dst}: {len(reader.tensors)} tensors, {widened} widened to F16")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: widen_gguf.py SRC.gguf DST.gguf")
    main(sys.argv[1], sys.argv[2])

"""An ONNX Runtime `.ort` model (a flatbuffer) read back into an ONNX model.

Moonshine's weights come from PyPI in the `.ort` format, the form ONNX Runtime runs as it is
and cannot optimise further: as shipped, every int8 weight is turned back into float at every
decoder step (a `Cast`, a `Mul` and an `Add` each). Read back into ONNX, the graph can be
folded to float once and quantised again the way onnxruntime runs fastest (`moonshine_model.py`).
Nothing here runs a model; the format's schema is the Python bindings the onnxruntime wheel
ships (`onnxruntime.tools.ort_format_model`).

The `.ort` tables map one to one onto ONNX's protobuf messages, with the same enumerations
(tensor element types, attribute types), so each is copied field by field; subgraphs (the
`If` of a merged decoder) are converted the same way, recursively.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from onnx import AttributeProto, GraphProto, ModelProto, TensorProto, ValueInfoProto


class _Fb(Protocol):
    """Any value of the flatbuffer bindings (they ship no types): a table, whose fields are read
    by name, or a field's value (a number, bytes)."""

    def __getattr__(self, name: str) -> _FbField: ...

    def __int__(self) -> int: ...

    def __float__(self) -> float: ...

    def __bytes__(self) -> bytes: ...


class _FbField(Protocol):
    def __call__(self, *args: int) -> _Fb: ...


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else ""


def read_model(data: bytes) -> ModelProto:
    """The ONNX model an `.ort` file holds (raises ValueError if it is not one)."""
    from onnx import helper
    from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs import InferenceSession

    if not InferenceSession.InferenceSession.InferenceSessionBufferHasIdentifier(data, 0):
        raise ValueError("not an ONNX Runtime (.ort) model")
    session: _Fb = InferenceSession.InferenceSession.GetRootAs(data, 0)
    model = session.Model()
    opsets = []
    for i in range(int(model.OpsetImportLength())):
        entry = model.OpsetImport(i)
        opsets.append(helper.make_opsetid(_text(entry.Domain()), int(entry.Version())))
    out = helper.make_model(_graph(model.Graph()), opset_imports=opsets)
    out.ir_version = int(model.IrVersion())
    out.producer_name = _text(model.ProducerName())
    out.producer_version = _text(model.ProducerVersion())
    return out


def _graph(graph: _Fb) -> GraphProto:
    from onnx import helper

    values = {}
    for i in range(int(graph.NodeArgsLength())):
        info = graph.NodeArgs(i)
        values[_text(info.Name())] = info
    initializers = [_tensor(graph.Initializers(i)) for i in range(int(graph.InitializersLength()))]
    if int(graph.SparseInitializersLength()):
        raise ValueError("sparse initializers are not supported")
    nodes = []
    for i in range(int(graph.NodesLength())):
        node = graph.Nodes(i)
        made = helper.make_node(
            _text(node.OpType()),
            [_text(node.Inputs(j)) for j in range(int(node.InputsLength()))],
            [_text(node.Outputs(j)) for j in range(int(node.OutputsLength()))],
            name=_text(node.Name()),
            domain=_text(node.Domain()),
        )
        made.attribute.extend(_attribute(node.Attributes(j)) for j in range(int(node.AttributesLength())))
        nodes.append(made)
    inputs = [_text(graph.Inputs(i)) for i in range(int(graph.InputsLength()))]
    outputs = [_text(graph.Outputs(i)) for i in range(int(graph.OutputsLength()))]
    constant = {t.name for t in initializers}
    made_graph = helper.make_graph(
        nodes,
        "graph",
        [_value_info(name, values.get(name)) for name in inputs if name not in constant],
        [_value_info(name, values.get(name)) for name in outputs],
        initializers,
    )
    known = set(inputs) | set(outputs)
    made_graph.value_info.extend(
        _value_info(name, info)
        for name, info in values.items()
        if name not in known and name not in constant and info.Type() is not None
    )
    return made_graph


def _value_info(name: str, info: _Fb | None) -> ValueInfoProto:
    from onnx import helper

    kind = None if info is None else info.Type()
    tensor = None
    if kind is not None and int(kind.ValueType()) == 1:  # TypeInfoValue.tensor_type
        from onnxruntime.tools.ort_format_model.ort_flatbuffers_py.fbs import TensorTypeAndShape

        table = kind.Value()
        tensor = TensorTypeAndShape.TensorTypeAndShape()
        tensor.Init(table.Bytes, table.Pos)
    if tensor is None:
        return helper.make_empty_tensor_value_info(name)
    shape: list[int | str | None] | None = None
    fb_shape = tensor.Shape()
    if fb_shape is not None:
        shape = []
        for i in range(int(fb_shape.DimLength())):
            value = fb_shape.Dim(i).Value()
            if value is None:
                shape.append(None)
            elif int(value.DimType()) == 1:  # DimensionValueType.VALUE
                shape.append(int(value.DimValue()))
            else:
                shape.append(_text(value.DimParam()) or None)
    return helper.make_tensor_value_info(name, int(tensor.ElemType()), shape)


def _tensor(tensor: _Fb) -> TensorProto:
    from onnx import TensorProto

    out = TensorProto()
    out.name = _text(tensor.Name())
    out.dims.extend(int(tensor.Dims(i)) for i in range(int(tensor.DimsLength())))
    out.data_type = int(tensor.DataType())
    if int(tensor.StringDataLength()):
        out.string_data.extend(bytes(tensor.StringData(i)) for i in range(int(tensor.StringDataLength())))
    elif int(tensor.RawDataLength()):
        out.raw_data = bytes(tensor.RawDataAsNumpy().tobytes())
    elif int(tensor.ExternalDataOffset()) >= 0 and int(tensor.DimsLength()):
        raise ValueError(f"tensor {out.name} keeps its data outside the model, which is not supported")
    return out


def _attribute(attribute: _Fb) -> AttributeProto:
    from onnx import AttributeProto

    out = AttributeProto()
    out.name = _text(attribute.Name())
    kind = AttributeProto.AttributeType.Value(  # the same enumeration as ONNX's
        AttributeProto.AttributeType.Name(int(attribute.Type()))
    )
    out.type = kind
    if kind == AttributeProto.FLOAT:
        out.f = float(attribute.F())
    elif kind == AttributeProto.INT:
        out.i = int(attribute.I())
    elif kind == AttributeProto.STRING:
        out.s = bytes(attribute.S())
    elif kind == AttributeProto.TENSOR:
        out.t.CopyFrom(_tensor(attribute.T()))
    elif kind == AttributeProto.GRAPH:
        out.g.CopyFrom(_graph(attribute.G()))
    elif kind == AttributeProto.FLOATS:
        out.floats.extend(float(attribute.Floats(i)) for i in range(int(attribute.FloatsLength())))
    elif kind == AttributeProto.INTS:
        out.ints.extend(int(attribute.Ints(i)) for i in range(int(attribute.IntsLength())))
    elif kind == AttributeProto.STRINGS:
        out.strings.extend(bytes(attribute.Strings(i)) for i in range(int(attribute.StringsLength())))
    elif kind == AttributeProto.TENSORS:
        out.tensors.extend(_tensor(attribute.Tensors(i)) for i in range(int(attribute.TensorsLength())))
    elif kind == AttributeProto.GRAPHS:
        out.graphs.extend(_graph(attribute.Graphs(i)) for i in range(int(attribute.GraphsLength())))
    else:
        raise ValueError(f"attribute {out.name} has a type ({kind}) that is not supported")
    return out

// apps/onnx/graph_builder.hpp — a small helper that grows an ONNX graph
// (onnx::GraphProto, through protobuf's generated API) one node at a time.
//
//   GraphBuilder b(graph);
//   const std::string w = b.floats("conv.weight", {O, C, k, k}, weights);
//   const std::string y = b.add("Conv", {x, w}, "conv", {Attribute::integers("pads", {1, 1, 1, 1})});
//
// Every value gets a name that is unique in the graph (ONNX graphs are in
// static single assignment form): `add` names a node's output after the
// base it is given, with "_2", "_3", ... appended when the base is taken.
// Initializers hold raw little-endian bytes (TensorProto.raw_data): float32
// for weights, int64 for the shapes, axes and pads that opset 13+ operators
// take as inputs. Graph inputs and outputs are float32 tensors whose first
// dimension may be symbolic (a dim_param such as "N").
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "nsl/core/bytes.hpp"
#include "nsl/core/error.hpp"

namespace nsl::onnx_export {

/// Dimensions, axes, pads or permutations as ONNX stores them.
using Dims = std::vector<std::int64_t>;

/// One attribute of a node: an integer, a list of integers or a float.
struct Attribute {
  std::string name;
  onnx::AttributeProto::AttributeType type = onnx::AttributeProto::INT;
  std::int64_t integer_value = 0;
  Dims integer_values;
  float real_value = 0.0f;

  static Attribute integer(std::string name, std::int64_t value) {
    Attribute a;
    a.name = std::move(name);
    a.integer_value = value;
    return a;
  }
  static Attribute integers(std::string name, Dims values) {
    Attribute a;
    a.name = std::move(name);
    a.type = onnx::AttributeProto::INTS;
    a.integer_values = std::move(values);
    return a;
  }
  static Attribute real(std::string name, float value) {
    Attribute a;
    a.name = std::move(name);
    a.type = onnx::AttributeProto::FLOAT;
    a.real_value = value;
    return a;
  }
};

class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto& graph) : graph_(graph) {}

  /// `base`, or `base` with "_2", "_3", ... appended when another value of
  /// the graph has that name already.
  std::string fresh(const std::string& base) {
    std::string name = base;
    for (int i = 2; !taken_.insert(name).second; ++i) name = cat(base, "_", i);
    return name;
  }

  /// A float32 initializer of shape `dims` holding `values` (row-major);
  /// returns its name (`name`, made unique).
  std::string floats(const std::string& name, const Dims& dims, const std::vector<float>& values) {
    std::int64_t count = 1;
    for (std::int64_t d : dims) count *= d;
    require(count == std::int64_t(values.size()), ErrorKind::shape, "onnx export: initializer ", name, " of ", count,
            " values given ", values.size());
    onnx::TensorProto& t = initializer(name, dims, onnx::TensorProto::FLOAT);
    std::string& bytes = *t.mutable_raw_data();
    bytes.reserve(values.size() * 4);
    for (float v : values) put_le_f32(bytes, v);
    return t.name();
  }
  /// A float32 scalar (shape []), for Add, Mul and Div with a constant.
  std::string scalar(const std::string& name, float value) { return floats(name, {}, {value}); }
  /// An int64 vector initializer (Reshape's shape, Slice's starts, Pad's pads, ...).
  std::string int64s(const std::string& name, const Dims& values) {
    onnx::TensorProto& t = initializer(name, {std::int64_t(values.size())}, onnx::TensorProto::INT64);
    std::string& bytes = *t.mutable_raw_data();
    for (std::int64_t v : values) put_le_u64(bytes, static_cast<std::uint64_t>(v));
    return t.name();
  }

  /// Adds a node `op` (default domain) reading `inputs` and writing one new
  /// value named after `output`; returns that value's name. The node is named
  /// after its output.
  std::string add(const std::string& op, const std::vector<std::string>& inputs, const std::string& output,
                  const std::vector<Attribute>& attributes = {}) {
    return add_multi(op, inputs, {output}, attributes).front();
  }
  /// The same for a node with several outputs (Split); returns their names.
  std::vector<std::string> add_multi(const std::string& op, const std::vector<std::string>& inputs,
                                     const std::vector<std::string>& outputs,
                                     const std::vector<Attribute>& attributes = {}) {
    onnx::NodeProto& node = *graph_.add_node();
    node.set_op_type(op);
    for (const std::string& in : inputs) node.add_input(in);
    std::vector<std::string> names;
    for (const std::string& out : outputs) names.push_back(*node.add_output() = fresh(out));
    node.set_name(names.front());
    for (const Attribute& a : attributes) {
      onnx::AttributeProto& attribute = *node.add_attribute();
      attribute.set_name(a.name);
      attribute.set_type(a.type);
      if (a.type == onnx::AttributeProto::INT) attribute.set_i(a.integer_value);
      else if (a.type == onnx::AttributeProto::FLOAT) attribute.set_f(a.real_value);
      else
        for (std::int64_t v : a.integer_values) attribute.add_ints(v);
    }
    return names;
  }

  /// Declares a graph input or output: a float32 tensor of `dims`, where the
  /// dimensions listed in `symbolic` (by position) are named, not fixed.
  void input(const std::string& name, const Dims& dims, const std::map<int, std::string>& symbolic) {
    declare(*graph_.add_input(), name, dims, symbolic);
    fresh(name);  // taken
  }
  void output(const std::string& name, const Dims& dims, const std::map<int, std::string>& symbolic) {
    declare(*graph_.add_output(), name, dims, symbolic);
  }

 private:
  onnx::TensorProto& initializer(const std::string& name, const Dims& dims, onnx::TensorProto::DataType type) {
    onnx::TensorProto& t = *graph_.add_initializer();
    t.set_name(fresh(name));
    t.set_data_type(type);
    for (std::int64_t d : dims) t.add_dims(d);
    return t;
  }
  static void declare(onnx::ValueInfoProto& value, const std::string& name, const Dims& dims,
                      const std::map<int, std::string>& symbolic) {
    value.set_name(name);
    onnx::TypeProto::Tensor& tensor = *value.mutable_type()->mutable_tensor_type();
    tensor.set_elem_type(onnx::TensorProto::FLOAT);
    onnx::TensorShapeProto& shape = *tensor.mutable_shape();
    for (std::size_t i = 0; i < dims.size(); ++i) {
      const auto named = symbolic.find(int(i));
      if (named != symbolic.end()) shape.add_dim()->set_dim_param(named->second);
      else shape.add_dim()->set_dim_value(dims[i]);
    }
  }

  onnx::GraphProto& graph_;
  std::set<std::string> taken_;  ///< every name handed out
};

}  // namespace nsl::onnx_export

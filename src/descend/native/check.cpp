// descend fast path: the check of every tensor a kernel is about to touch, as it is now.
//
// The kernels trust sizes and addresses, so before each call descend.optim.fast.step hands
// this function each column of tensors (parameters, gradients, each state) and gets back
// their addresses and sizes only when every tensor is a float32/float64 strided CPU tensor,
// contiguous, of the expected size, whose elements [storage_offset, storage_offset + numel)
// lie inside its storage. Each tensor is read through torch's C shim (the aoti_torch_*
// functions exported by libtorch_cpu, a stable C ABI): the loader hands their addresses over
// once (descend_set_torch), so this library still includes and links nothing of torch.
//
// A tensor arrives as its TensorImpl* (Python's ``t._cdata``); the address of that value is
// a valid AtenTensorHandle, because an at::Tensor is exactly one intrusive pointer to its
// TensorImpl. The shim's getters borrow the tensor (no reference count changes) and turn any
// C++ exception (a tensor without storage) into a non-zero error code.
#include <cstdint>

namespace {

using Handle = const int64_t*;  // AtenTensorHandle
using GetI64 = int32_t (*)(Handle, int64_t*);
using GetI32 = int32_t (*)(Handle, int32_t*);
using GetBool = int32_t (*)(Handle, bool*);
using GetPtr = int32_t (*)(Handle, void**);

struct Torch {
  GetI32 dtype = nullptr, device = nullptr, layout = nullptr;
  GetBool contiguous = nullptr;
  GetI64 numel = nullptr, offset = nullptr, storage_bytes = nullptr;
  GetPtr data = nullptr;
  int32_t f32 = 0, f64 = 0, cpu = 0, strided = 0;
};

Torch shim;
bool shim_ready = false;

}  // namespace

// Why a tensor failed (CheckArgs::reason); descend.optim.fast.step words each one.
enum Reason : int32_t {
  kOk = 0,
  kNoShim = 1,      // descend_set_torch was never called
  kTorchError = 2,  // the shim raised: no storage to point at (functional, wrapper tensors)
  kDtype = 3,
  kDevice = 4,
  kLayout = 5,
  kNonContiguous = 6,
  kSize = 7,        // not as many elements as its parameter
  kPastStorage = 8, // elements beyond the end of its storage
};

struct CheckArgs {
  int64_t n;
  const int64_t* impl;   // TensorImpl* of each tensor
  const int64_t* numel;  // the size each must have, or null (any)
  int64_t* out_numel;    // sizes, written as checked
  int64_t* out_ptr;      // addresses, written as checked
  int32_t dtype;         // 0 float32, 1 float64
  int32_t reason;        // out: Reason of the first tensor that failed
  int64_t bad;           // out: its index, -1 when every tensor passed
};

extern "C" void descend_set_torch(void* const* fns, const int32_t* consts) {
  shim.dtype = reinterpret_cast<GetI32>(fns[0]);
  shim.device = reinterpret_cast<GetI32>(fns[1]);
  shim.layout = reinterpret_cast<GetI32>(fns[2]);
  shim.contiguous = reinterpret_cast<GetBool>(fns[3]);
  shim.numel = reinterpret_cast<GetI64>(fns[4]);
  shim.offset = reinterpret_cast<GetI64>(fns[5]);
  shim.storage_bytes = reinterpret_cast<GetI64>(fns[6]);
  shim.data = reinterpret_cast<GetPtr>(fns[7]);
  shim.f32 = consts[0];
  shim.f64 = consts[1];
  shim.cpu = consts[2];
  shim.strided = consts[3];
  shim_ready = true;
}

namespace {

int32_t check_one(Handle t, int32_t want_dtype, int64_t item, const int64_t* expect,
                  int64_t* numel_out, int64_t* ptr_out) {
  int32_t dtype = 0, device = 0, layout = 0;
  if (shim.dtype(t, &dtype) || shim.device(t, &device) || shim.layout(t, &layout))
    return kTorchError;
  if (dtype != want_dtype) return kDtype;
  if (device != shim.cpu) return kDevice;
  if (layout != shim.strided) return kLayout;
  bool contiguous = false;
  if (shim.contiguous(t, &contiguous)) return kTorchError;
  if (!contiguous) return kNonContiguous;
  int64_t numel = 0, offset = 0, bytes = 0;
  void* data = nullptr;
  if (shim.numel(t, &numel) || shim.offset(t, &offset)) return kTorchError;
  if (expect != nullptr && numel != *expect) return kSize;
  if (shim.storage_bytes(t, &bytes) || shim.data(t, &data)) return kTorchError;
  // offset, numel ≥ 0 and far below 2⁶³ / 8 for any real storage: no overflow
  if (offset < 0 || numel < 0 || (offset + numel) * item > bytes) return kPastStorage;
  if (numel > 0 && data == nullptr) return kPastStorage;
  *numel_out = numel;
  *ptr_out = reinterpret_cast<int64_t>(data);
  return kOk;
}

}  // namespace

// 0 when every tensor passed (addresses and sizes written), else a Reason (and a->bad).
extern "C" int32_t descend_check(CheckArgs* a) {
  a->bad = -1;
  a->reason = kOk;
  if (!shim_ready) {
    a->bad = 0;
    return a->reason = kNoShim;
  }
  const int32_t want = a->dtype == 1 ? shim.f64 : shim.f32;
  const int64_t item = a->dtype == 1 ? 8 : 4;
  for (int64_t i = 0; i < a->n; ++i) {
    const int64_t* expect = a->numel != nullptr ? a->numel + i : nullptr;
    const int32_t r = check_one(a->impl + i, want, item, expect, a->out_numel + i, a->out_ptr + i);
    if (r != kOk) {
      a->bad = i;
      return a->reason = r;
    }
  }
  return kOk;
}

// The values of a->n one-element tensors (the losses descend.monitor holds), as doubles in
// out[0..n): each tensor checked as descend_check checks it (dtype a->dtype, CPU, strided,
// contiguous, its one element inside its storage; addresses and sizes written), then read.
// 0 when every tensor passed; else a Reason (and a->bad) and nothing written to out.
extern "C" int32_t descend_read_scalars(CheckArgs* a, double* out) {
  a->bad = -1;
  a->reason = kOk;
  if (!shim_ready) {
    a->bad = 0;
    return a->reason = kNoShim;
  }
  const bool f64 = a->dtype == 1;
  const int32_t want = f64 ? shim.f64 : shim.f32;
  const int64_t item = f64 ? 8 : 4, one = 1;
  for (int64_t i = 0; i < a->n; ++i) {
    const int32_t r = check_one(a->impl + i, want, item, &one, a->out_numel + i, a->out_ptr + i);
    if (r != kOk) {
      a->bad = i;
      return a->reason = r;
    }
  }
  for (int64_t i = 0; i < a->n; ++i) {
    const void* at = reinterpret_cast<const void*>(a->out_ptr[i]);
    out[i] = f64 ? *static_cast<const double*>(at)
                 : static_cast<double>(*static_cast<const float*>(at));
  }
  return kOk;
}

// The layout check the loader runs: Python and C++ must agree on sizeof(CheckArgs).
extern "C" int64_t descend_check_args_size() { return static_cast<int64_t>(sizeof(CheckArgs)); }

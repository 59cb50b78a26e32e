/* The draw of the reference DropBlock as a multiplier, as a C++ operator: dropblock::drop_block_mask_cpu.
 *
 * What torch.compile runs once per training step for masks that several maps share (profiles with
 * sharing="channel" or "batch" on CPU, torch's default generator): the same draw as the Python kernel of
 * dropblock::drop_block_mask (dropblock/_op.py, drop_block_mask; dropblock/_native.py, NativePlan.draw),
 * without Python between the compiled kernels. It consumes the same numbers from the same generator and
 * applies the same IEEE operations in the same order, so it returns the same multiplier bit for bit
 * (tests/test_operator.py):
 *
 *   gamma  = clip((drop_prob * gamma_num / gamma_den) * gamma_scale, 0, 1)   (dropblock/law.py, rule_gamma:
 *            Eq. 1 of the paper with gamma_num = prod(L), gamma_den = prod(k) * prod(L - k + 1); the
 *            per-block rule with gamma_num = 1, gamma_den = prod(k))
 *   chunks of log1p(-U), U ~ torch.rand float64 (the same numbers from the same generator, drawn here without
 *            a dispatch), sized as dropblock/_seeds.py, _log_uniform_chunks
 *   seeds, exact count and product by the plan of plan.c and apply.c
 *   scale  = mask_len / (kept + eps) under normalize="global" (0 when nothing is kept or it is not finite)
 *   m      = scale where kept, +0 where dropped, in float32 (float64 for float64 outputs)
 *
 * Built by dropblock/_build.py (build_operator) with the C++ compiler and torch's headers, beside plan.c and
 * apply.c, and loaded with torch.ops.load_library by dropblock/_mask_op.py, which decides, when a graph is
 * traced, whether a call can take this operator. Its arguments are drop_prob and one string, the call string
 * (dropblock/_mask_op.py, encode), written once when the graph is traced: what this kernel needs, then the
 * arguments of the call, from which the Python kernel draws. One string rather than fifteen arguments, because a
 * compiled graph calls the operator from Python once per step and torch.ops converts every argument and every
 * element of a list on every call.
 */
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/DistributionsHelper.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/log1p_cpu_dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

extern "C" {
void *db_plan_begin(int64_t n_masks, const int64_t *gv);
int db_plan_extend(void *handle, const double *l, int64_t n, double log_q, double n_positions, double *position);
int db_plan_add(void *handle, const double *seeds, int64_t n);
int db_plan_finish(void *handle, int shared);
int64_t db_plan_count(void *handle);
int db_plan_apply(void *handle, const void *src, void *dst, int dtype, int out_dtype, int64_t n_maps,
                  int64_t channels, int sharing, double scale, int n_threads);
void db_plan_free(void *handle);
}

namespace {

constexpr int64_t kThreadFrom = int64_t(1) << 16;  // dropblock/_native.py, _THREAD_FROM

/* -U for n uniforms U on [0, 1) from torch's default CPU generator: the numbers torch.rand(n, dtype=float64)
 * draws (its CPU kernel takes them one by one from at::uniform_real_distribution<double>(0, 1) under the
 * generator's lock, aten/src/ATen/native/cpu/DistributionTemplates.h, uniform_kernel), negated (exact). The
 * log1p that follows is torch's own kernel, as the Python path's log1p_. */
void negated_uniforms(double *out, int64_t n) {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    auto *impl = at::check_generator<at::CPUGeneratorImpl>(generator);
    at::uniform_real_distribution<double> uniform(0.0, 1.0);
    for (int64_t i = 0; i < n; i++) out[i] = -uniform(impl);
}

/* m.fill_(value) for the contiguous float32 or float64 multiplier: value rounded to the dtype, as fill_. */
void fill(at::Tensor &m, double value) {
    const int64_t n = m.numel();
    if (m.scalar_type() == at::kFloat) {
        std::fill_n(m.data_ptr<float>(), n, static_cast<float>(value));
    } else {
        std::fill_n(m.data_ptr<double>(), n, value);
    }
}

/* The static arguments of a call, read from its call string (dropblock/_mask_op.py, encode): "v1", the
 * multiplier's shape (comma-separated) and dtype (f32 or f64), the 16 values of the geometry vector, the sharing
 * code, normalize (0 or 1), then gamma_num, gamma_den, gamma_scale and eps as the 16 hex digits of their float64
 * bits; the tokens after those (the call's own arguments) are the Python kernel's. */
struct Call {
    std::vector<int64_t> shape, geometry;
    at::ScalarType dtype = at::kFloat;
    int64_t sharing = 0;
    bool normalize = false;
    double gamma_num = 0, gamma_den = 0, gamma_scale = 0, eps = 0;
};

/* The tokens of text between separators, in order; an empty token past the last one. */
class Tokens {
  public:
    Tokens(std::string_view text, char separator) : rest_(text), separator_(separator) {}
    bool done() const { return done_; }
    std::string_view next() {
        const size_t end = std::min(rest_.find(separator_), rest_.size());
        done_ = end == rest_.size();
        const std::string_view token = rest_.substr(0, end);
        rest_.remove_prefix(std::min(end + 1, rest_.size()));
        return token;
    }

  private:
    std::string_view rest_;
    char separator_;
    bool done_ = false;
};

bool read_int(std::string_view s, int64_t &value) {
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

bool read_ints(std::string_view list, std::vector<int64_t> &values) {  // comma-separated
    values.clear();
    for (Tokens items{list, ','}; !items.done();) {
        int64_t v = 0;
        if (!read_int(items.next(), v)) return false;
        values.push_back(v);
    }
    return true;
}

bool read_bits(std::string_view s, double &value) {  // 16 hex digits: the float64's bits, exact in any locale
    uint64_t bits = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), bits, 16);
    if (ec != std::errc() || end != s.data() + s.size() || s.size() != 16) return false;
    std::memcpy(&value, &bits, sizeof value);
    return true;
}

bool parse_call(std::string_view text, Call &call) {
    Tokens tokens{text, ' '};
    if (tokens.next() != "v1") return false;
    const std::string_view shape = tokens.next(), dtype = tokens.next(), geometry = tokens.next();
    if (!read_ints(shape, call.shape) || !read_ints(geometry, call.geometry)) return false;
    if (dtype == "f32") {
        call.dtype = at::kFloat;
    } else if (dtype == "f64") {
        call.dtype = at::kDouble;
    } else {
        return false;
    }
    int64_t normalize = 0;
    if (!read_int(tokens.next(), call.sharing) || !read_int(tokens.next(), normalize) || (normalize >> 1) != 0)
        return false;
    call.normalize = normalize == 1;
    return read_bits(tokens.next(), call.gamma_num) && read_bits(tokens.next(), call.gamma_den) &&
           read_bits(tokens.next(), call.gamma_scale) && read_bits(tokens.next(), call.eps);
}

/* The call of the last call string seen by this thread: a compiled step passes the same string every step. */
const Call &decoded(c10::string_view text) {
    thread_local std::string last;
    thread_local Call call;
    thread_local bool valid = false;
    const std::string_view view(text.data(), text.size());
    if (!valid || view != last) {
        Call fresh;
        TORCH_CHECK_VALUE(parse_call(view, fresh), "not a call string of dropblock::drop_block_mask_cpu (v1): '",
                          std::string(view), "'");
        call = std::move(fresh);
        last.assign(view);
        valid = true;
    }
    return call;
}

struct PlanGuard {
    void *handle;
    ~PlanGuard() { db_plan_free(handle); }
};

at::Tensor drop_block_mask_cpu(const at::Tensor &drop_prob, c10::string_view call_string) {
    const Call &call = decoded(call_string);
    const c10::IntArrayRef shape(call.shape), geometry(call.geometry);
    const at::ScalarType dtype = call.dtype;
    const int64_t sharing = call.sharing;
    TORCH_CHECK_VALUE(drop_prob.numel() == 1 && at::isFloatingType(drop_prob.scalar_type()),
                      "drop_prob must be a floating scalar tensor, got ", drop_prob.scalar_type(), " of shape ",
                      drop_prob.sizes());
    TORCH_CHECK_VALUE(shape.size() == 4 || shape.size() == 5, "the multiplier must have 4 or 5 dimensions, got ",
                      shape);
    TORCH_CHECK_VALUE(geometry.size() == 16, "the geometry vector must hold 16 values, got ", geometry.size());
    TORCH_CHECK_VALUE(dtype == at::kFloat || dtype == at::kDouble, "the multiplier is float32 or float64, got ",
                      dtype);
    TORCH_CHECK_VALUE(sharing == 1 || sharing == 2, "sharing code must be 1 (channel) or 2 (batch), got ", sharing);
    // drop_prob.item(), without a dispatch for the usual float64 CPU scalar
    const double p = drop_prob.scalar_type() == at::kDouble && drop_prob.device().is_cpu()
                         ? *drop_prob.const_data_ptr<double>()
                         : drop_prob.item<double>();
    TORCH_CHECK_VALUE(p >= 0.0 && p <= 1.0, "drop_prob must be in [0, 1], got ", p);
    const auto layout = shape.size() == 4 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::ChannelsLast3d;
    at::Tensor m = at::empty(shape, at::TensorOptions().dtype(dtype).memory_format(layout));
    TORCH_CHECK_VALUE(m.is_contiguous(), "the multiplier of shape ", shape, " is not contiguous in its layout");
    if (m.numel() == 0 || p == 0.0) {
        fill(m, 1.0);
        return m;
    }

    const int64_t batch = shape[0], channels = shape[1], n_maps = batch * channels;
    const int64_t per_map = geometry[0], n_units = geometry[1];
    TORCH_CHECK_VALUE(n_maps * n_units == m.numel(), "the geometry's ", n_units, " units per map do not match ",
                      shape);
    const int64_t n_masks = sharing == 1 ? batch : 1;
    const double gamma = std::min(std::max(p * call.gamma_num / call.gamma_den * call.gamma_scale, 0.0), 1.0);
    const int64_t n_positions = n_masks * per_map;

    PlanGuard plan{db_plan_begin(n_masks, geometry.data())};
    TORCH_CHECK(plan.handle != nullptr, "DropBlock CPU kernel: cannot allocate a block plan");
    if (gamma >= 1.0) {
        std::vector<double> all(static_cast<size_t>(n_positions));
        for (int64_t i = 0; i < n_positions; i++) all[static_cast<size_t>(i)] = static_cast<double>(i);
        TORCH_CHECK(db_plan_add(plan.handle, all.data(), n_positions) == 0, "DropBlock CPU kernel: cannot "
                    "allocate the seeds");
    } else if (gamma > 0.0) {
        const double log_q = std::log1p(-gamma);
        double position = -1.0;
        std::vector<double> buffer;
        while (true) {
            const double remaining_mean = (static_cast<double>(n_positions - 1) - position) * gamma;
            const auto n_draw = static_cast<int64_t>(remaining_mean + 6.0 * std::sqrt(remaining_mean + 1.0) + 16.0);
            buffer.resize(static_cast<size_t>(n_draw));
            negated_uniforms(buffer.data(), n_draw);
            // torch's log1p kernel, without the dispatcher's layers above it (the same function of the same bits)
            at::Tensor logs = at::from_blob(buffer.data(), {n_draw}, at::TensorOptions().dtype(at::kDouble));
            at::cpu::log1p_(logs);
            const int rc = db_plan_extend(plan.handle, buffer.data(), n_draw, log_q,
                                          static_cast<double>(n_positions), &position);
            TORCH_CHECK(rc >= 0, "DropBlock CPU kernel: cannot allocate the seeds");
            if (rc == 1) break;
        }
    }
    const int rc = db_plan_finish(plan.handle, 1);
    TORCH_CHECK(rc != -1, "DropBlock CPU kernel: cannot allocate the block plan");
    TORCH_CHECK(rc == 0, "DropBlock CPU kernel: invalid seeds (code ", rc, ")");
    const int64_t n_dropped = db_plan_count(plan.handle);
    TORCH_CHECK(n_dropped >= 0, "DropBlock CPU kernel: cannot allocate the counting buffer");

    double scale = 1.0;
    if (call.normalize) {
        const int64_t mask_len = n_masks * n_units, kept = mask_len - n_dropped;
        const double denom = static_cast<double>(kept) + call.eps;
        scale = kept > 0 && denom > 0 ? static_cast<double>(mask_len) / denom : 0.0;
        if (!std::isfinite(scale)) scale = 0.0;
    }
    fill(m, scale);
    const int code = dtype == at::kFloat ? 0 : 1;  // kernel.h: DT_F32, DT_F64
    const int threads = m.numel() >= kThreadFrom ? at::get_num_threads() : 1;
    const int applied = db_plan_apply(plan.handle, m.data_ptr(), m.data_ptr(), code, code, n_maps, channels,
                                      static_cast<int>(sharing), 1.0, threads);
    TORCH_CHECK(applied == 0, "DropBlock CPU kernel: apply failed (code ", applied, ")");
    return m;
}

}  // namespace

/* The schema is defined in Python (dropblock/_op.py), with a Python kernel for every backend that draws from the
 * arguments of the call (input shape and dtype, block_size, spatial_dims, profile), so that a compiled graph
 * that names this operator also runs in a process where this library is not loaded; the kernel below, for the
 * CPU dispatch key, takes precedence once it is. */
TORCH_LIBRARY_IMPL(dropblock, CPU, m) { m.impl("drop_block_mask_cpu", TORCH_FN(drop_block_mask_cpu)); }

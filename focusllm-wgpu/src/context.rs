//! The device side of the backend: adapter choice, device and queue, limits, captured errors,
//! the buffer pool, and the helpers every operation uses to allocate, dispatch and copy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use focusllm_core::{Error, Result};

use crate::pool::{BufferPool, PooledBuffer, TENSOR_USAGE, UNIFORM_USAGE};
use crate::{AdapterSummary, WeightPrecision, WgpuConfig, WgpuOptions};

/// Freed activation bytes the pool keeps for reuse.
const POOL_MAX_FREE_BYTES: u64 = 1 << 30;

pub(crate) fn err(message: impl Into<String>) -> Error {
    Error::Backend { backend: "wgpu", message: message.into() }
}

/// The backends searched, narrowed by `WGPU_BACKEND` when set (e.g. `WGPU_BACKEND=vulkan`).
fn backends() -> wgpu::Backends {
    wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all())
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    desc.backends = backends();
    wgpu::Instance::new(desc)
}

fn summary(index: usize, adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    AdapterSummary {
        index,
        name: info.name,
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        shader_f16: adapter.features().contains(wgpu::Features::SHADER_F16),
    }
}

/// Every adapter wgpu finds, in the order [`WgpuOptions::adapter`] indexes them.
pub(crate) fn list_adapters() -> Vec<AdapterSummary> {
    let adapters = pollster::block_on(instance().enumerate_adapters(backends()));
    adapters.iter().enumerate().map(|(i, a)| summary(i, a)).collect()
}

/// Preference order when no index is given: real GPUs before virtual and software ones, native
/// APIs (Vulkan, Metal, DX12) before GL, then adapters with f16 shaders.
fn rank(adapter: &wgpu::Adapter) -> (u8, u8, u8) {
    let info = adapter.get_info();
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let api = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::Gl => 1,
        _ => 2,
    };
    let f16 = u8::from(!adapter.features().contains(wgpu::Features::SHADER_F16));
    (kind, api, f16)
}

/// Device, queue and everything operations share.
pub(crate) struct Context {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) adapter: AdapterSummary,
    pub(crate) limits: wgpu::Limits,
    /// Whether 2-D weights are kept in f16.
    pub(crate) f16_weights: bool,
    /// Largest part (bytes) of a split weight.
    pub(crate) max_weight_part: u64,
    pool: Arc<BufferPool>,
    pub(crate) kernels: Mutex<HashMap<String, Arc<crate::program::Kernel>>>,
    /// First error wgpu reported asynchronously (validation, out of memory, device lost).
    error: Arc<Mutex<Option<String>>>,
    /// A small zeroed buffer bound where a kernel's optional input is absent.
    pub(crate) dummy: wgpu::Buffer,
}

impl Context {
    pub(crate) fn new(options: &WgpuOptions, config: &WgpuConfig) -> Result<Self> {
        let instance = instance();
        let adapters = pollster::block_on(instance.enumerate_adapters(backends()));
        let (index, adapter) = match options.adapter {
            Some(i) => {
                let found = adapters.len();
                let adapter = adapters.into_iter().nth(i).ok_or_else(|| {
                    err(format!("no adapter with index {i} ({found} found; see WgpuBackend::adapters)"))
                })?;
                (i, adapter)
            }
            None => adapters.into_iter().enumerate().min_by_key(|(_, a)| rank(a)).ok_or_else(|| {
                err(format!(
                    "no GPU adapter found (searched backends {:?}; on Linux install a Vulkan driver, \
                     e.g. Debian's mesa-vulkan-drivers and libvulkan1)",
                    backends()
                ))
            })?,
        };
        let summary = summary(index, &adapter);
        let has_f16 = adapter.features().contains(wgpu::Features::SHADER_F16);
        let f16_weights = has_f16 && config.precision == WeightPrecision::Auto;
        // The adapter's own limits: wgpu's defaults cap buffers at 256 MiB and bindings at 128 MiB.
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("focusllm"),
            required_features: if f16_weights { wgpu::Features::SHADER_F16 } else { wgpu::Features::empty() },
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| err(format!("cannot open adapter {:?}: {e}", summary.name)))?;
        let error = Arc::new(Mutex::new(None::<String>));
        let slot = Arc::clone(&error);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        let slot = Arc::clone(&error);
        device.set_device_lost_callback(move |reason, message| {
            if reason != wgpu::DeviceLostReason::Destroyed {
                let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert_with(|| format!("device lost ({reason:?}): {message}"));
            }
        });
        let binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        let max_weight_part = config.max_binding_bytes.map_or(binding, |b| b.min(binding)).max(4);
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("focusllm dummy"),
            size: 256,
            usage: TENSOR_USAGE,
            mapped_at_creation: false,
        });
        let pool = Arc::new(BufferPool::new(device.clone(), POOL_MAX_FREE_BYTES));
        Ok(Context {
            device,
            queue,
            adapter: summary,
            limits,
            f16_weights,
            max_weight_part,
            pool,
            kernels: Mutex::new(HashMap::new()),
            error,
            dummy,
        })
    }

    /// Fails with the first error wgpu reported since the device was opened, if any.
    pub(crate) fn check(&self) -> Result<()> {
        match &*self.error.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(message) => Err(err(format!("device error: {message}"))),
            None => Ok(()),
        }
    }

    /// Largest buffer (bytes) one storage binding can cover.
    pub(crate) fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    /// An activation buffer of at least `bytes` bytes, or an error when no binding can cover it.
    pub(crate) fn alloc(&self, bytes: u64, what: &str) -> Result<PooledBuffer> {
        if bytes > self.max_binding() {
            return Err(err(format!(
                "{what} needs {bytes} bytes, more than the adapter's largest storage binding ({} bytes)",
                self.max_binding()
            )));
        }
        Ok(self.pool.take(bytes, TENSOR_USAGE, self.max_binding()))
    }

    /// A buffer holding `data` (host-to-device upload; queued before the next submission).
    pub(crate) fn upload<T: bytemuck::Pod>(&self, data: &[T], what: &str) -> Result<PooledBuffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let buffer = self.alloc(bytes.len() as u64, what)?;
        write_padded(&self.queue, &buffer, bytes);
        Ok(buffer)
    }

    /// Bytes held by the pool's free lists (for tests and diagnostics).
    pub(crate) fn pool_free_bytes(&self) -> u64 {
        self.pool.free_bytes()
    }

    fn params(&self, params: &[u32; 8]) -> PooledBuffer {
        let buffer = self.pool.take(32, UNIFORM_USAGE, u64::MAX);
        self.queue.write_buffer(&buffer, 0, bytemuck::cast_slice(params));
        buffer
    }

    /// Records `dispatches` into one compute pass and submits it.
    pub(crate) fn run(&self, dispatches: &[Dispatch<'_>]) -> Result<()> {
        self.check()?;
        let params: Vec<PooledBuffer> = dispatches.iter().map(|d| self.params(&d.params)).collect();
        let groups: Vec<wgpu::BindGroup> = dispatches
            .iter()
            .zip(&params)
            .map(|(d, p)| {
                let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: p.as_entire_binding() }];
                entries.extend(
                    d.buffers
                        .iter()
                        .enumerate()
                        .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() }),
                );
                self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(d.kernel.name.as_str()),
                    layout: &d.kernel.layout,
                    entries: &entries,
                })
            })
            .collect();
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut pass =
                encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
            for (d, g) in dispatches.iter().zip(&groups) {
                let [x, y, z] = d.groups;
                if x == 0 || y == 0 || z == 0 {
                    continue;
                }
                pass.set_pipeline(&d.kernel.pipeline);
                pass.set_bind_group(0, g, &[]);
                pass.dispatch_workgroups(x, y, z);
            }
        }
        self.queue.submit([encoder.finish()]);
        Ok(())
    }

    /// Performs buffer-to-buffer copies `(src, src_offset, dst, dst_offset, bytes)` in one submission.
    pub(crate) fn copy(&self, copies: &[(&wgpu::Buffer, u64, &wgpu::Buffer, u64, u64)]) -> Result<()> {
        self.check()?;
        if copies.iter().all(|c| c.4 == 0) {
            return Ok(());
        }
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        for &(src, so, dst, d_o, n) in copies {
            if n > 0 {
                encoder.copy_buffer_to_buffer(src, so, dst, d_o, n);
            }
        }
        self.queue.submit([encoder.finish()]);
        Ok(())
    }

    /// Reads `bytes` bytes from the start of `buffer` (waits for every queued operation).
    pub(crate) fn read(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        self.check()?;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("focusllm read-back"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| err(format!("waiting for the device: {e}")))?;
        self.check()?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(err(format!("mapping a read-back buffer: {e}"))),
            Err(_) => return Err(err("the read-back buffer was never mapped")),
        }
        let data = staging.get_mapped_range(..).map_err(|e| err(format!("reading a mapped buffer: {e}")))?.to_vec();
        staging.unmap();
        Ok(data)
    }

    /// A grid of `n` workgroups along one logical axis, folded into two dimensions when `n`
    /// exceeds the per-dimension limit (shaders rebuild the index from `num_workgroups`).
    pub(crate) fn grid(&self, n: u64) -> Result<[u32; 3]> {
        let max = u64::from(self.limits.max_compute_workgroups_per_dimension).max(1);
        if n <= max {
            return Ok([n as u32, 1, 1]);
        }
        let y = n.div_ceil(max);
        if y > max {
            return Err(err(format!("{n} workgroups exceed the adapter's dispatch limits")));
        }
        Ok([max as u32, y as u32, 1])
    }
}

/// Queues a write of `bytes`, padded with zeros to a multiple of 4 bytes as wgpu requires.
fn write_padded(queue: &wgpu::Queue, buffer: &wgpu::Buffer, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    if bytes.len().is_multiple_of(4) {
        queue.write_buffer(buffer, 0, bytes);
    } else {
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len().div_ceil(4) * 4, 0);
        queue.write_buffer(buffer, 0, &padded);
    }
}

/// One kernel launch: parameters (binding 0, eight 32-bit words), buffers (bindings 1..), grid.
pub(crate) struct Dispatch<'a> {
    pub(crate) kernel: &'a crate::program::Kernel,
    pub(crate) params: [u32; 8],
    pub(crate) buffers: Vec<&'a wgpu::Buffer>,
    pub(crate) groups: [u32; 3],
}

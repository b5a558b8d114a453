//! Micro-benchmark of quantised and half-precision matmuls for decode-sized inputs: `cargo run --release -p infer-models --example qmm`.
use std::sync::Arc;
use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

fn time(name: &str, bytes: usize, f: impl Fn() -> Tensor) {
    let _ = f();
    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        let _ = f();
    }
    let per = t.elapsed() / n;
    println!(
        "{name:>12}: {per:>10.1?}  {:.1} GB/s",
        bytes as f64 / per.as_secs_f64() / 1e9
    );
}

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    for (out, inp) in [(3072usize, 576usize), (576, 1536), (49152, 576)] {
        let w = Tensor::randn(0f32, 1.0, (out, inp), &dev)?;
        for m in [1usize, 8] {
            let x = Tensor::randn(0f32, 1.0, (m, inp), &dev)?;
            println!("[{out}x{inp}] m={m}");
            let wh = w.to_dtype(DType::F16)?;
            time("f32 W·xT", out * inp * 4, || w.matmul(&x.t().unwrap()).unwrap());
            time("f16 W·xT", out * inp * 2, || {
                wh.matmul(&x.to_dtype(DType::F16).unwrap().t().unwrap()).unwrap()
            });
            for dt in [GgmlDType::F16, GgmlDType::Q8_0, GgmlDType::Q4_0] {
                let qt = QTensor::quantize(&w, dt)?;
                let bytes = qt.storage_size_in_bytes();
                let mm = QMatMul::QTensor(Arc::new(qt));
                time(&format!("q {dt:?}"), bytes, || mm.forward(&x).unwrap());
            }
        }
    }
    Ok(())
}

//! Micro-benchmark of candle matmul layouts for decode-sized inputs.
use candle_core::{DType, Device, Tensor};
use std::time::Instant;

fn time(name: &str, f: impl Fn() -> Tensor) {
    let _ = f();
    let n = 50;
    let t = Instant::now();
    for _ in 0..n {
        let _ = f();
    }
    println!("{name}: {:?}", t.elapsed() / n);
}

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let (out, inp) = (3072usize, 576usize);
    let w = Tensor::randn(0f32, 1.0, (out, inp), &dev)?;
    let wt = w.t()?.contiguous()?;
    let wh = w.to_dtype(DType::F16)?;
    let wb = w.to_dtype(DType::BF16)?;
    for m in [1usize, 8, 40] {
        let x = Tensor::randn(0f32, 1.0, (m, inp), &dev)?;
        let xh = x.to_dtype(DType::F16)?;
        println!("m={m} (weights {} MB f32)", out * inp * 4 / 1_000_000);
        time("  x.matmul(w.t())", || x.matmul(&w.t().unwrap()).unwrap());
        time("  x.matmul(wt contiguous)", || x.matmul(&wt).unwrap());
        time("  w.matmul(x.t()).t()", || w.matmul(&x.t().unwrap()).unwrap());
        time("  f16 x.matmul(wh.t())", || xh.matmul(&wh.t().unwrap()).unwrap());
        time("  f16 wh.matmul(x.t())", || wh.matmul(&xh.t().unwrap()).unwrap());
        time("  bf16 widen", || {
            x.to_dtype(DType::BF16).unwrap().matmul(&wb.t().unwrap()).unwrap()
        });
    }
    Ok(())
}

//! The backend's operations, one file per family; each checks shapes, allocates its output and
//! queues its kernel(s). Nothing here waits for the GPU.

mod attention;
mod elementwise;
mod matmul;
mod rows;

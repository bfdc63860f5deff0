// Guest memory lives outside the codec's linear memory (it is QEMU's memfd, mapped by the addon),
// so the codec reaches it through these imports. Offsets are within one chunk (< 1 GiB), already
// checked against the chunk table by the caller.

@external("env", "guest_read")
export declare function guest_read(chunk: i32, off: u32, dst: usize, len: u32): void;

@external("env", "guest_write")
export declare function guest_write(chunk: i32, off: u32, src: usize, len: u32): void;

@external("env", "guest_load16")
export declare function guest_load16(chunk: i32, off: u32): u32;

@external("env", "guest_store16")
export declare function guest_store16(chunk: i32, off: u32, value: u32): void;

/**
 * A strict structural walk over one msgpack value, independent of msgpackr: it reads every header by the msgpack
 * spec, skips over bin/str/ext payloads by their lengths (so bytes inside a payload are never mistaken for a
 * header), and returns the type of every ext it meets. Used to prove the server never sends ext type 0 (msgpackr's
 * `undefined`), which other languages' decoders turn into an opaque ExtType or refuse.
 */
export function extTypesIn(bytes: Uint8Array): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const found: number[] = [];
  let p = 0;
  const take = (n: number): number => {
    if (p + n > bytes.length) throw new Error(`truncated msgpack at byte ${p}: ${n} more needed`);
    const at = p;
    p += n;
    return at;
  };
  const u8 = () => bytes[take(1)];
  const u16 = () => view.getUint16(take(2));
  const u32 = () => view.getUint32(take(4));
  const ext = (length: number) => {
    found.push(view.getInt8(take(1)));
    take(length);
  };
  const items = (n: number) => {
    for (let i = 0; i < n; i++) value();
  };
  function value(): void {
    const b = u8();
    if (b <= 0x7f || b >= 0xe0) return; // positive / negative fixint
    if (b <= 0x8f) return items(2 * (b & 0x0f)); // fixmap
    if (b <= 0x9f) return items(b & 0x0f); // fixarray
    if (b <= 0xbf) return void take(b & 0x1f); // fixstr
    switch (b) {
      case 0xc0: case 0xc2: case 0xc3: return; // nil, false, true
      case 0xc4: case 0xd9: return void take(u8()); // bin 8, str 8
      case 0xc5: case 0xda: return void take(u16()); // bin 16, str 16
      case 0xc6: case 0xdb: return void take(u32()); // bin 32, str 32
      case 0xc7: return ext(u8()); // ext 8: length, then type
      case 0xc8: return ext(u16());
      case 0xc9: return ext(u32());
      case 0xca: return void take(4); // float 32
      case 0xcb: return void take(8); // float 64
      case 0xcc: case 0xd0: return void take(1); // (u)int 8
      case 0xcd: case 0xd1: return void take(2);
      case 0xce: case 0xd2: return void take(4);
      case 0xcf: case 0xd3: return void take(8);
      case 0xd4: return ext(1); // fixext 1, 2, 4, 8, 16: type, then data
      case 0xd5: return ext(2);
      case 0xd6: return ext(4);
      case 0xd7: return ext(8);
      case 0xd8: return ext(16);
      case 0xdc: return items(u16()); // array 16
      case 0xdd: return items(u32());
      case 0xde: return items(2 * u16()); // map 16
      case 0xdf: return items(2 * u32());
      default: throw new Error(`byte 0x${b.toString(16)} at ${p - 1} is not a msgpack header`); // 0xc1
    }
  }
  value();
  if (p !== bytes.length) throw new Error(`${bytes.length - p} bytes after the msgpack value`);
  return found;
}

// The part of node-usb (`usb` 2.x) that `lunbox probe` uses, as a small interface so tests
// inject a fake device. The real module is loaded lazily, only by `lunbox probe`.

export interface UsbDeviceDescriptor {
  readonly idVendor: number;
  readonly idProduct: number;
  readonly bcdDevice?: number;
  readonly iManufacturer: number;
  readonly iProduct: number;
  readonly iSerialNumber: number;
}

export interface UsbInterfaceDescriptor {
  readonly bInterfaceNumber: number;
  readonly bAlternateSetting?: number;
  readonly bInterfaceClass: number;
  readonly bInterfaceSubClass: number;
  readonly bInterfaceProtocol: number;
}

export interface UsbEndpoint {
  readonly direction: 'in' | 'out';
  /** 2 = bulk (LIBUSB_TRANSFER_TYPE_BULK). */
  readonly transferType: number;
  readonly descriptor: { readonly bEndpointAddress: number; readonly wMaxPacketSize: number };
  timeout: number;
  clearHalt(cb: (err: Error | undefined) => void): void;
}
export interface UsbInEndpoint extends UsbEndpoint {
  transfer(length: number, cb: (err: Error | undefined, data?: Buffer) => void): unknown;
}
export interface UsbOutEndpoint extends UsbEndpoint {
  transfer(data: Buffer, cb: (err: Error | undefined, actual?: number) => void): unknown;
}

export interface UsbInterface {
  readonly descriptor: UsbInterfaceDescriptor;
  readonly endpoints: readonly UsbEndpoint[];
  isKernelDriverActive(): boolean;
  detachKernelDriver(): void;
  attachKernelDriver(): void;
  claim(): void;
  release(closeEndpoints: boolean, cb: (err?: Error) => void): void;
}

export interface UsbDevice {
  readonly busNumber: number;
  readonly deviceAddress: number;
  readonly deviceDescriptor: UsbDeviceDescriptor;
  /** Interface descriptors of the active configuration (readable without open()). */
  readonly configDescriptor?: { readonly interfaces: readonly (readonly UsbInterfaceDescriptor[])[] } | undefined;
  readonly interfaces?: readonly UsbInterface[] | undefined;
  open(): void;
  close(): void;
  interface(n: number): UsbInterface;
  getStringDescriptor(index: number, cb: (err?: Error, value?: string) => void): void;
  controlTransfer(bmRequestType: number, bRequest: number, wValue: number, wIndex: number, dataOrLength: number | Buffer, cb: (err: Error | undefined, data?: Buffer | number) => void): unknown;
}

export interface UsbBinding {
  getDeviceList(): UsbDevice[];
}

/** node-usb, loaded on first use; a clear error when it is not installed. */
export function loadUsb(): UsbBinding {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('usb') as UsbBinding;
  } catch (err) {
    throw new Error(`lunbox probe needs the 'usb' package (node-usb, libusb): npm install usb (${(err as Error).message.split('\n')[0]})`);
  }
}

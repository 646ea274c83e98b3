import { Injectable } from '@nestjs/common';
import { AppConfig } from '../config/app-config';
import { addressGroup } from './address-group';

/** Gives a place back; calling it again does nothing. */
export type Release = () => void;

/**
 * Caps on open event connections (Socket.IO, SSE, plain WebSocket) per client address and per
 * session, counted in this process: a connection costs memory and a listener here, so this is where
 * the cap protects. With N API processes behind a balancer a client may hold up to N times the cap.
 * A cap of 0 is no cap. Addresses count by `addressGroup` (an IPv6 /64 as one).
 */
@Injectable()
export class ConnectionCaps {
  private readonly byAddress = new Map<string, number>();
  private readonly bySession = new Map<string, number>();

  constructor(private readonly config: AppConfig) {}

  /** Whether one more connection from `address` would pass (for refusing a handshake early). */
  addressHasRoom(address: string): boolean {
    const cap = this.config.limits.connectionsPerAddress;
    return cap === 0 || (this.byAddress.get(addressGroup(address)) ?? 0) < cap;
  }

  takeAddress(address: string): Release | null {
    return this.take(this.byAddress, addressGroup(address), this.config.limits.connectionsPerAddress);
  }

  takeSession(sessionId: string): Release | null {
    return this.take(this.bySession, sessionId, this.config.limits.connectionsPerSession);
  }

  /** Both places at once (SSE, plain WebSocket), or neither. */
  takeBoth(address: string, sessionId: string): Release | 'address-full' | 'session-full' {
    const address_ = this.takeAddress(address);
    if (!address_) return 'address-full';
    const session = this.takeSession(sessionId);
    if (!session) {
      address_();
      return 'session-full';
    }
    return () => {
      address_();
      session();
    };
  }

  private take(counts: Map<string, number>, key: string, cap: number): Release | null {
    const open = counts.get(key) ?? 0;
    if (cap > 0 && open >= cap) return null;
    counts.set(key, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (counts.get(key) ?? 1) - 1;
      if (left <= 0) counts.delete(key);
      else counts.set(key, left);
    };
  }
}

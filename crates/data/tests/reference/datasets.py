"""Independent re-implementation of the diffuse-data constructions from their
documentation (crates/data/src/datasets.rs), in plain Python with f64
Box-Muller; prints the reference points of the value-stability test in
tests/datasets.rs. Run: python3 crates/data/tests/reference/datasets.py"""
from math import *
M0,M1,W0,W1=0xD2511F53,0xCD9E8D57,0x9E3779B9,0xBB67AE85
def philox(c,k):
    c0,c1,c2,c3=c;k0,k1=k
    for r in range(10):
        p0=M0*c0;p1=M1*c2
        c0,c1,c2,c3=((p1>>32)^c1^k0)&0xffffffff,p1&0xffffffff,((p0>>32)^c3^k1)&0xffffffff,p0&0xffffffff
        k0=(k0+W0)&0xffffffff;k1=(k1+W1)&0xffffffff
    return [c0,c1,c2,c3]
def bm(wa,wb):
    ua=((wa>>8)+1)*2**-24; ub=(wb>>8)*2**-24
    r=sqrt(-2*log(ua)); return r*cos(2*pi*ub), r*sin(2*pi*ub)
unit=lambda w:(w+0.5)*2**-32
cat=lambda w,k:(w*k)>>32
names=["moons","swiss-roll","8gaussians","25gaussians","checkerboard","pinwheel","circles","rings"]
def norm(name):
    if name=="moons": vx=4*(0.76); vy=4*(0.625-1/pi-0.0625+0.01); return (0,0.3),sqrt((vx+vy)/2)
    if name=="swiss-roll":
        et2=9.75*pi*pi; mx,mz=2,2/(3*pi); vx=((et2-.5)/2-mx*mx+1)/25; vz=((et2+.5)/2-mz*mz+1)/25
        return (mx/5,mz/5),sqrt((vx+vz)/2)
    v={"8gaussians":8.25/1.414**2,"25gaussians":8.0025/2.828**2,"checkerboard":16/3,"pinwheel":2.2,"circles":9*(0.3125+0.0064),"rings":9*0.234375+0.0064}[name]
    return (0,0),sqrt(v)
def point(name,seed,split,i):
    idx=names.index(name); stream=(0x64617461<<32)|(idx<<8)|split
    w=philox([i&0xffffffff,i>>32,stream&0xffffffff,stream>>32],[seed&0xffffffff,seed>>32])
    n0,n1=bm(w[2],w[3])
    if name=="moons":
        k=cat(w[0],2);th=pi*unit(w[1])
        x,y=(cos(th),sin(th)) if k==0 else (1-cos(th),0.5-sin(th))
        p=(2*(x+0.1*n0)-1,2*(y+0.1*n1)-0.2)
    elif name=="swiss-roll":
        k=0;t=1.5*pi*(1+2*unit(w[0]));p=((t*cos(t)+n0)/5,(t*sin(t)+n1)/5)
    elif name=="8gaussians":
        k=cat(w[0],8);a=2*pi*k/8;p=((4*cos(a)+.5*n0)/1.414,(4*sin(a)+.5*n1)/1.414)
    elif name=="25gaussians":
        k=cat(w[0],25);p=((2*(k//5-2)+.05*n0)/2.828,(2*(k%5-2)+.05*n1)/2.828)
    elif name=="checkerboard":
        x1=4*unit(w[0])-2;b=cat(w[2],2);x2=unit(w[1])-2*b+(floor(x1)%2);k=2*(floor(x1)+2)+1-b;p=(2*x1,2*x2)
    elif name=="pinwheel":
        k=cat(w[0],5);r=1+.3*n0;s=.1*n1;a=2*pi*k/5+.25*exp(r);p=(2*(r*cos(a)+s*sin(a)),2*(-r*sin(a)+s*cos(a)))
    elif name=="circles":
        k=cat(w[0],2);R=[1,.5][k];f=2*pi*unit(w[1]);p=(3*(R*cos(f)+.08*n0),3*(R*sin(f)+.08*n1))
    else:
        k=cat(w[0],4);R=3*(1-.25*k);f=2*pi*unit(w[1]);p=(R*cos(f)+.08*n0,R*sin(f)+.08*n1)
    m,s=norm(name)
    return [(p[0]-m[0])/s,(p[1]-m[1])/s],k
for nm in names:
    print(nm, point(nm,0,0,0), point(nm,42,1,123456))

function [y1,xf1,xf2] = narx_m(x1,xi1,xi2)
%NARX_M neural network simulation function.
%
% [y1,xf1,xf2] = narx_m(x1,xi1,xi2) takes these arguments:
%   x1 = 1xTS matrix, input #1
%   xi1 = 1x2 matrix, initial 2 delay states for input #1.
%   xi2 = 1x2 matrix, initial 2 delay states for feedback output #2.

% ===== NEURAL NETWORK CONSTANTS =====

% Input 1
x1_step1.xoffset = 0;
x1_step1.gain = 0.5;
x1_step1.ymin = -1;

% ===== SIMULATION ========

% Dimensions
TS = size(x1,2); % timesteps

% Input 1 Delay States
xd1 = mapminmax_apply(xi1,x1_step1);
xd1 = [xd1 zeros(1,1)];
end
